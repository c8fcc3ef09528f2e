"""The in-process Celery worker used by ``ragctl serve`` on embedded defaults (no broker server).

A ``WorkController`` with the threads pool (two threads, so a re-index never blocks uploads) consumes
the same tasks from the ``memory://`` broker in a thread of the API process, so the API and the worker
share one set of stores (Qdrant Edge and the BM25 files lock their folders to one process). Messages in
memory die with the process; the SQL job state does not, and start-up recovery re-queues what was left
unfinished.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery

from workers.app import queue_names
from workers.pool import AppThreadPool

log = logging.getLogger(__name__)


class EmbeddedWorker:
    def __init__(self, app: Celery, concurrency: int = 2) -> None:
        self.app = app
        self.concurrency = concurrency
        self._controller = None
        self._thread: threading.Thread | None = None
        self._scheduler: threading.Thread | None = None
        self._stopping = threading.Event()

    def _schedule(self) -> None:
        """Celery beat needs its own process, which cannot reach a ``memory://`` broker: send the beat
        schedule's tasks from a thread instead."""
        entries = self.app.conf.beat_schedule or {}
        last = {name: 0.0 for name in entries}
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            for name, entry in entries.items():
                if now - last[name] >= float(entry["schedule"]):
                    last[name] = now
                    self.app.send_task(entry["task"])

    def start(self) -> None:
        self._controller = self.app.WorkController(
            pool_cls=AppThreadPool,
            concurrency=self.concurrency,
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname="embedded@localhost",
            queues=list(queue_names(self.app)),
        )
        self._thread = threading.Thread(target=self._controller.start, name="embedded-worker", daemon=True)
        self._thread.start()
        self._stopping.clear()
        self._scheduler = threading.Thread(target=self._schedule, name="embedded-beat", daemon=True)
        self._scheduler.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._controller is None:
            return
        self._stopping.set()
        self._controller.stop(in_sighandler=False)
        if self._thread is not None:
            self._thread.join(timeout)
        self._controller = None
