"""Start-up recovery: the SQL job state is the truth, so whatever it says is unfinished is queued again.

Tasks are idempotent (deterministic chunk ids, re-index restarts into a dropped target), so queueing a
task that is in fact still queued somewhere costs a little work and never corrupts anything.
"""

from __future__ import annotations

import logging

from celery import Celery

from runtime.services import Services
from workers.app import ingest_enqueuer, reindex_enqueuer

log = logging.getLogger(__name__)


def requeue_unfinished(services: Services, celery: Celery) -> tuple[int, int]:
    documents = services.ingest.unfinished_document_ids()
    jobs = services.ingest.unfinished_job_ids()
    enqueue_ingest = ingest_enqueuer(celery, services.settings.ingest_batch_documents)
    enqueue_reindex = reindex_enqueuer(celery)
    enqueue_ingest(documents)
    for job_id in jobs:
        enqueue_reindex(job_id)
    if documents or jobs:
        log.info("re-queued unfinished work", extra={"documents": len(documents), "reindex_jobs": len(jobs)})
    return len(documents), len(jobs)
