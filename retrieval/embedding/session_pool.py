"""A ``ThreadPoolExecutor`` whose every thread owns one ONNX session, fed the batches of every call in turn.

Invariants:

- One thread per session, each started at construction and given its session by the executor's
  ``initializer`` (a thread-local), so a batch always runs on the session of the thread that runs it and
  two batches never share a session.
- The executor's work queue is FIFO and outlives any call: a second call's batches (another worker
  thread's) queue behind the first's, so every core stays busy across calls, and a call's batches are
  submitted together (under a lock), so calls finish in arrival order.
- A failing batch's error is raised in the caller; the call's batches not yet started are cancelled, and
  the pool keeps serving later calls.
- The threads hold neither the pool nor its owner: once nobody references the pool, its executor is
  collected and its threads exit (``concurrent.futures`` wakes them through a weak reference).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

RunBatch = Callable[[Any, Sequence[Any], np.ndarray, np.ndarray], None]
"""``run_batch(session, items, rows, out)``: fill ``out[rows]`` from ``items[rows]`` on ``session``."""


class SessionPool:
    """Runs batches on ``sessions``, one thread each; see the module docstring for the invariants."""

    def __init__(self, sessions: Sequence[Any], thread_name_prefix: str = "onnx-session") -> None:
        if not sessions:
            raise ValueError("a session pool needs at least one session")
        handed_out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for session in sessions:
            handed_out.put(session)
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=len(sessions),
            thread_name_prefix=thread_name_prefix,
            initializer=_take_session,
            initargs=(self._local, handed_out),
        )
        self._submit = threading.Lock()  # one call's batches go in together
        # The executor starts a thread only when no started one is idle; hold each at a barrier until all
        # are up, so every session has its thread before the first call (and none waits for a lazy start).
        started = threading.Barrier(len(sessions))
        for future in [self._executor.submit(started.wait) for _ in sessions]:
            future.result()

    def run(self, run_batch: RunBatch, items: Sequence[Any], batches: Sequence[np.ndarray], out: np.ndarray) -> None:
        """Fill ``out``'s rows of every batch; re-raises the first failed batch's error in the caller."""
        if not batches:
            return
        with self._submit:
            futures = [
                self._executor.submit(_on_own_session, self._local, run_batch, items, rows, out) for rows in batches
            ]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if pending:  # a batch failed: the others of this call are not worth running
            for future in pending:
                future.cancel()
            wait(pending)
        for future in futures:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                raise error

    def shutdown(self) -> None:
        """Let the threads exit once the batches already queued are done (also happens when collected)."""
        self._executor.shutdown(wait=False)


def _take_session(local: threading.local, handed_out: queue.SimpleQueue[Any]) -> None:
    local.session = handed_out.get_nowait()


def _on_own_session(
    local: threading.local, run_batch: RunBatch, items: Sequence[Any], rows: np.ndarray, out: np.ndarray
) -> None:
    run_batch(local.session, items, rows, out)
