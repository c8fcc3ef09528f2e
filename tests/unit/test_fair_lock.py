"""FairLock: mutual exclusion, grants in request order, timeouts, and use under threading.Condition."""

from __future__ import annotations

import threading
import time

import pytest

from core.fair_lock import FairLock
from tests.edge_corpus import wait_until


def test_exclusive_and_non_blocking() -> None:
    lock = FairLock()
    assert lock.acquire()
    assert lock.locked()
    assert not lock.acquire(blocking=False)
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


def test_a_timed_out_waiter_leaves_the_queue() -> None:
    lock = FairLock()
    lock.acquire()
    assert not lock.acquire(timeout=0.01)
    assert lock.waiting() == 0
    lock.release()
    assert not lock.locked()  # not handed to the waiter that gave up


def test_waiters_get_the_lock_in_the_order_they_asked() -> None:
    lock = FairLock()
    order: list[int] = []
    lock.acquire()
    threads = []
    for n in range(6):
        thread = threading.Thread(target=lambda n=n: [lock.acquire(), order.append(n), lock.release()])
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: lock.waiting() == n + 1)
    lock.release()
    for thread in threads:
        thread.join()
    assert order == list(range(6))
    assert not lock.locked()


def test_release_hands_the_lock_to_the_waiter_so_the_releaser_cannot_take_it_back() -> None:
    lock = FairLock()
    got: list[str] = []
    lock.acquire()
    waiter = threading.Thread(target=lambda: [lock.acquire(), got.append("waiter"), lock.release()])
    waiter.start()
    wait_until(lambda: lock.waiting() == 1)
    lock.release()
    took_back = lock.acquire(blocking=False)  # at once, before the waiter has run
    if took_back:
        lock.release()
    waiter.join()
    assert not took_back
    assert got == ["waiter"]


def test_a_writer_looping_on_the_lock_cannot_starve_a_reader() -> None:
    """Between a reader asking and getting the lock, the writer takes it at most twice (once if it held it)."""
    lock = FairLock()
    writes = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal writes
        while not stop.is_set():
            with lock:
                writes += 1
                time.sleep(0.0002)  # work under the lock that lets go of the GIL, like a write into Edge

    thread = threading.Thread(target=writer)
    thread.start()
    wait_until(lambda: writes > 0)
    overtaken = []
    for _ in range(200):
        before = writes
        with lock:
            overtaken.append(writes - before)
    stop.set()
    thread.join()
    assert max(overtaken) <= 2


def test_condition_wait_releases_and_retakes_it() -> None:
    lock = FairLock()
    ready = threading.Condition(lock)
    flag = []

    def setter() -> None:
        with ready:
            flag.append(True)
            ready.notify_all()

    with ready:
        threading.Thread(target=setter).start()
        assert ready.wait_for(lambda: flag, timeout=10)
        assert lock.locked()
    assert not lock.locked()
