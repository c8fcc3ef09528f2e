"""``runtime.queue.TaskQueue`` on Celery: the implementation the API opens by entry point."""

from __future__ import annotations

from collections.abc import Sequence

from runtime.services import Services
from workers.app import ingest_enqueuer, make_celery, reindex_enqueuer
from workers.embedded import EmbeddedWorker
from workers.recovery import requeue_unfinished


class CeleryQueue:
    """One Celery app per process, its services attached; with ``run_worker`` an embedded worker too."""

    def __init__(self, services: Services, run_worker: bool) -> None:
        settings = services.settings
        self.celery = make_celery(settings)
        self.celery.services = services  # type: ignore[attr-defined]
        self._services = services
        self._ingest = ingest_enqueuer(self.celery, settings.ingest_batch_documents)
        self._reindex = reindex_enqueuer(self.celery)
        self._worker = EmbeddedWorker(self.celery) if run_worker else None

    def enqueue_ingest(self, document_ids: Sequence[str]) -> None:
        self._ingest(document_ids)

    def enqueue_reindex(self, job_id: str) -> None:
        self._reindex(job_id)

    def start(self) -> None:
        if self._worker is not None:
            self._worker.start()
            requeue_unfinished(self._services, self.celery)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
