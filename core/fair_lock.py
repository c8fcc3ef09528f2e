"""A mutual-exclusion lock granted in the order it was asked for.

``threading.Lock`` is not fair: release wakes a waiter, but a thread that releases and at once acquires
again (a loop of writes) usually takes the lock back before the woken waiter runs, so waiters can starve
for as long as the loop lasts. Here release hands the lock to the longest waiter directly.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FairLock:
    """Non-reentrant; usable wherever a ``threading.Lock`` is, ``threading.Condition`` included."""

    def __init__(self) -> None:
        self._state = threading.Lock()  # guards the two fields below, held only for a few instructions
        self._held = False
        self._waiters: deque[threading.Lock] = deque()  # one locked gate per waiter, oldest first

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._state:
            if not self._held and not self._waiters:
                self._held = True
                return True
            if not blocking:
                return False
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        if gate.acquire(timeout=timeout):
            return True  # handed over by release(): ``_held`` stayed True
        with self._state:
            if gate in self._waiters:
                self._waiters.remove(gate)
                return False
        return True  # handed over between the timeout and taking ``_state``: the lock is ours

    def release(self) -> None:
        with self._state:
            if not self._held:
                raise RuntimeError("release of an unlocked FairLock")
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def locked(self) -> bool:
        return self._held

    def waiting(self) -> int:
        """Threads queued for the lock now."""
        with self._state:
            return len(self._waiters)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
