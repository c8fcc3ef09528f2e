"""The task queue as the API and the CLI see it: enqueue by id, start and stop with the process.

``api`` never imports ``workers``: it opens the queue through this interface, and the implementation is
the one registered under the ``hybrid_rag.task_queue`` entry point (``workers.queue:CeleryQueue``, Celery
on ``RAG_BROKER_URL`` or, without a broker, a worker in the same process). Every ``enqueue`` is called
only after the rows it names are committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Protocol

from runtime.services import Services

ENTRY_POINT_GROUP = "hybrid_rag.task_queue"
DEFAULT_QUEUE = "celery"


class TaskQueue(Protocol):
    def enqueue_ingest(self, document_ids: Sequence[str]) -> None:
        """Index these documents (one request's uploads)."""
        ...

    def enqueue_reindex(self, job_id: str) -> None: ...

    def start(self) -> None:
        """Start the in-process worker if there is one, and queue again what SQL says is unfinished."""
        ...

    def stop(self) -> None: ...


QueueFactory = Callable[[Services, bool], TaskQueue]
"""``(services, run_worker) -> TaskQueue``; ``run_worker`` asks for a worker inside this process."""


def open_queue(services: Services, run_worker: bool, name: str = DEFAULT_QUEUE) -> TaskQueue:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise RuntimeError(
            f"No task queue named {name!r} is installed (entry point group {ENTRY_POINT_GROUP}); "
            "reinstall the package (pip install -e .)."
        )
    factory: QueueFactory = next(iter(found)).load()
    return factory(services, run_worker)
