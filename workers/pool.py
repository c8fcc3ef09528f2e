"""A threads pool that runs each task under its own Celery app.

Celery's threads pool resolves the task registry through ``current_app``, which is thread-local and
falls back to the process default. Several embedded apps can live in one process (the API and tests
build one per settings), so each pool thread is pinned to the app that owns the pool.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency.thread import TaskPool


class AppThreadPool(TaskPool):
    def on_apply(self, target: Any, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        app = self.app

        def run(*a: Any, **kw: Any) -> Any:
            app.set_current()
            return target(*a, **kw)

        return super().on_apply(run, args, kwargs, **options)
