"""The Celery app factory. One app per ``Services``: tasks reach their services through ``task.app``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from celery import Celery

from core.config import Settings
from core.tracing import prepare_celery_tasks
from workers.names import (
    INGEST_BATCH_TASK,
    INGEST_QUEUE,
    INGEST_TASK,
    PURGE_EVERY_S,
    PURGE_TASK,
    REDRIVE_TASK,
    REINDEX_QUEUE,
    REINDEX_TASK,
    TASK_TIME_LIMIT_S,
    VISIBILITY_TIMEOUT_S,
)
from workers.tasks import register_tasks


def queue_names(app: Celery) -> tuple[str, str]:
    """(ingest queue, re-index queue) of this app."""
    return app.conf.task_default_queue, app.conf.task_routes["rag.reindex_*"]["queue"]


def make_celery(settings: Settings) -> Celery:
    embedded = settings.broker_url is None
    app = Celery("hybrid_rag", broker=settings.broker_url or "memory://", set_as_current=False)
    # The memory transport's queues are global to the process: give each embedded app its own names.
    suffix = f".{uuid.uuid4().hex[:8]}" if embedded else ""
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=INGEST_QUEUE + suffix,
        # Re-index jobs get their own queue so a long one never starves uploads.
        task_routes={"rag.reindex_*": {"queue": REINDEX_QUEUE + suffix}},
        task_time_limit=TASK_TIME_LIMIT_S,
        task_soft_time_limit=TASK_TIME_LIMIT_S - 60,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_transport_options=(
            {"polling_interval": 0.05} if embedded else {"visibility_timeout": VISIBILITY_TIMEOUT_S}
        ),
    )
    # Run by `ragctl worker --beat` (one process per deployment) or the embedded worker's scheduler.
    app.conf.beat_schedule = {
        "purge-expired": {"task": PURGE_TASK, "schedule": PURGE_EVERY_S},
        "redrive-stale": {"task": REDRIVE_TASK, "schedule": settings.redrive_every_s},
    }
    register_tasks(app)
    prepare_celery_tasks(app.tasks.values())
    return app


def enqueuer(app: Celery, task_name: str) -> Callable[[str], None]:
    """An ``enqueue(id)`` callable for the services, which call it only after committing the row."""

    def enqueue(item_id: str) -> None:
        app.send_task(task_name, args=[item_id])

    return enqueue


def ingest_enqueuer(app: Celery, batch_documents: int) -> Callable[[Sequence[str]], None]:
    """``enqueue(document_ids)``: one message per ``batch_documents`` documents of one request (one task
    indexes that many together anyway), the single-document task for one. A message per document would cost
    the API a broker round trip each and leave the worker thousands of tasks to skip after a bulk load."""
    size = max(1, batch_documents)

    def enqueue(document_ids: Sequence[str]) -> None:
        for start in range(0, len(document_ids), size):
            batch = list(document_ids[start : start + size])
            if len(batch) == 1:
                app.send_task(INGEST_TASK, args=[batch[0]])
            else:
                app.send_task(INGEST_BATCH_TASK, args=[batch])

    return enqueue


def reindex_enqueuer(app: Celery) -> Callable[[str], None]:
    return enqueuer(app, REINDEX_TASK)
