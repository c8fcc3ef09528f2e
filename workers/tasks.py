"""Celery tasks. They take ids, re-read state from SQL, and are safe to run twice."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import Celery, Task
from sqlalchemy.exc import OperationalError

from core.errors import RagError
from core.ids import new_id
from core.retention import purge_expired
from ingest.outcome import Outcome
from workers.names import (
    DROP_INDEX_TASK,
    INGEST_BATCH_TASK,
    INGEST_TASK,
    PURGE_TASK,
    REDRIVE_TASK,
    REINDEX_TASK,
    TASK_TIME_LIMIT_S,
)

if TYPE_CHECKING:
    from runtime.services import Services

log = logging.getLogger(__name__)

MAX_RETRIES = 5
TRANSIENT = (OperationalError, ConnectionError, TimeoutError)
# Queries that resolved the old version just before a switch finish within this grace period.
DROP_GRACE_S = 30


def services_of(task: Task) -> Services:
    services = getattr(task.app, "services", None)
    if services is None:
        raise RuntimeError("This Celery app has no services attached; start it through ragctl.")
    return services


def ingest_document(task: Task, document_id: str, alone: bool = False) -> Outcome:
    """Index ``document_id`` together with up to RAG_INGEST_BATCH_DOCUMENTS - 1 other queued documents, or
    ``alone`` (sent after a batch it was in crashed, so a bad file fails only itself)."""
    return ingest(task, [document_id], alone)[document_id]


def ingest_documents(task: Task, document_ids: list[str]) -> dict[str, Outcome]:
    """One message for the documents of one upload request, topped up with other queued documents."""
    return ingest(task, document_ids)


def ingest(task: Task, document_ids: list[str], alone: bool = False) -> dict[str, Outcome]:
    """Each document's final status. Documents another run took (into its batch) or finished are skipped.

    A task whose documents are all taken still indexes queued peers: one message per upload means most
    messages of a bulk load find their document taken, and the queued ones behind them would otherwise
    wait for their own messages (the embedded broker delivers one per poll). With nothing to take, the
    task ends after two SELECTs.
    """
    services = services_of(task)
    ingest = services.ingest
    token = (task.request.id or new_id()).replace("-", "")[:32]  # stable across this task's retries
    own = ingest.claimable(document_ids, token)
    room = 0 if alone else services.settings.ingest_batch_documents - len(own)
    peers = ingest.claim_queued_peers(document_ids, room, token)
    if not own and not peers:
        return dict.fromkeys(document_ids, Outcome.skipped)
    try:
        outcomes = ingest.index([*own, *peers], token)
        return {document_id: outcomes.get(document_id, Outcome.skipped) for document_id in document_ids}
    except (*TRANSIENT, RagError) as exc:
        if isinstance(exc, RagError) and exc.status_code != 503:  # permanent: retrying cannot help
            log.warning("ingest refused", extra={"document_ids": own, "error": exc.message})
            return fail_or_split(task, services, own, peers, token, document_ids, exc.message)
        requeue_peers(task, services, peers, token)
        if task.request.retries >= MAX_RETRIES:
            message = "Indexing kept failing on an unavailable store; upload it again later."
            return mark_all_failed(services, own, token, document_ids, message, reason="unavailable")
        log.warning("ingest retry", extra={"document_ids": own, "error": type(exc).__name__})
        raise task.retry(exc=exc, countdown=min(60, 2**task.request.retries)) from exc
    except Exception:
        log.exception("ingest crashed", extra={"document_ids": own})
        message = "The file could not be processed (an unexpected parser error); check that it opens correctly."
        return fail_or_split(task, services, own, peers, token, document_ids, message)


def fail_or_split(
    task: Task,
    services: Services,
    own: list[str],
    peers: list[str],
    token: str,
    document_ids: list[str],
    message: str,
) -> dict[str, Outcome]:
    """A document that can never be indexed ends ``failed``, never queued forever; one bad file must not
    fail its batch, so a batch goes back to the queue with each document to run alone."""
    if len(own) + len(peers) > 1:
        requeued = requeue_peers(task, services, [*own, *peers], token, alone=True)
        return {d: Outcome.queued if d in requeued else Outcome.skipped for d in document_ids}
    return mark_all_failed(services, own, token, document_ids, message, reason="error")


def mark_all_failed(
    services: Services, own: list[str], token: str, document_ids: list[str], message: str, reason: str
) -> dict[str, Outcome]:
    for document_id in own:
        services.ingest.mark_failed(document_id, message, reason=reason, token=token)
    return {document_id: Outcome.failed if document_id in own else Outcome.skipped for document_id in document_ids}


def requeue_peers(task: Task, services: Services, peers: list[str], token: str, alone: bool = False) -> list[str]:
    """Documents of a failed batch that this run still holds go back to the queue, each with a task of its
    own (theirs may be gone). Returns their ids."""
    released = services.ingest.release_claims(peers, token)
    for peer in released:
        task.app.send_task(INGEST_TASK, args=[peer], kwargs={"alone": alone})
    return released


def reindex_collection(task: Task, job_id: str) -> str:
    services = services_of(task)

    def drop_later(index: str) -> None:
        task.app.send_task(DROP_INDEX_TASK, args=[index], countdown=DROP_GRACE_S)

    return services.ingest.run_reindex(job_id, drop_later)


def drop_index(task: Task, index: str) -> None:
    services_of(task).retriever.drop_index(index)


def purge_expired_data(task: Task) -> dict[str, int]:
    services = services_of(task)
    purged = purge_expired(services.db, services.settings.retention_days)
    if purged.query_logs or purged.conversations:
        log.info("retention purge", extra={"query_logs": purged.query_logs, "conversations": purged.conversations})
    return {"query_logs": purged.query_logs, "conversations": purged.conversations}


def redrive_stale(task: Task) -> int:
    """Re-send tasks for documents whose message was lost; duplicates are harmless (tasks are idempotent)."""
    services = services_of(task)
    settings = services.settings
    ids = services.ingest.stale_document_ids(settings.redrive_after_s, TASK_TIME_LIMIT_S + 60)
    for document_id in ids:
        task.app.send_task(INGEST_TASK, args=[document_id])
    if ids:
        log.warning("re-drove stale documents", extra={"count": len(ids)})
    return len(ids)


def register_tasks(app: Celery) -> None:
    app.task(name=INGEST_TASK, bind=True, acks_late=True)(ingest_document)
    app.task(name=INGEST_BATCH_TASK, bind=True, acks_late=True)(ingest_documents)
    app.task(name=REINDEX_TASK, bind=True, acks_late=True)(reindex_collection)
    app.task(name=DROP_INDEX_TASK, bind=True, acks_late=True)(drop_index)
    app.task(name=PURGE_TASK, bind=True)(purge_expired_data)
    app.task(name=REDRIVE_TASK, bind=True)(redrive_stale)
