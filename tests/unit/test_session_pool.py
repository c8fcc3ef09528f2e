"""The ONNX runtime's session pool (a ThreadPoolExecutor, one session per thread), with plain Python objects
as its sessions: every batch lands in its rows, every session takes batches, concurrent calls keep their own
results, a failing batch raises in the caller, and the threads end with the pool."""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retrieval.embedding.session_pool import RunBatch, SessionPool


class Session:
    """Stands for an ONNX session: records the threads it ran on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.threads: set[int] = set()


def fill_with_length(session: Session, texts: Sequence[str], rows: np.ndarray, out: np.ndarray) -> None:
    session.threads.add(threading.get_ident())
    for row in rows:
        if texts[row] == "boom":
            raise ValueError(f"{session.name} cannot embed {texts[row]!r}")
        out[row] = len(texts[row])


def run(pool: SessionPool, texts: list[str], size: int, run_batch: RunBatch = fill_with_length) -> np.ndarray:
    out = np.zeros((len(texts), 1), dtype=np.float32)
    batches = [np.arange(start, min(start + size, len(texts))) for start in range(0, len(texts), size)]
    pool.run(run_batch, texts, batches, out)
    return out


def test_every_batch_lands_in_its_rows_in_any_order() -> None:
    pool = SessionPool([Session("a"), Session("b")])
    texts = ["x" * n for n in range(1, 41)]
    out = np.zeros((len(texts), 1), dtype=np.float32)
    order = np.random.default_rng(0).permutation(len(texts))  # the runtime sends longest first, not in order
    pool.run(fill_with_length, texts, [order[start : start + 3] for start in range(0, len(texts), 3)], out)
    assert out[:, 0].tolist() == list(range(1, 41))


def test_both_sessions_take_batches_each_on_its_own_thread() -> None:
    sessions = [Session("a"), Session("b")]
    pool = SessionPool(sessions)
    both_in = threading.Barrier(2, timeout=30)

    def meet(session: Session, texts: Sequence[str], rows: np.ndarray, out: np.ndarray) -> None:
        both_in.wait()  # returns only once a second batch runs at the same time, on the other thread
        fill_with_length(session, texts, rows, out)

    assert run(pool, ["ab", "abc"], 1, meet)[:, 0].tolist() == [2, 3]
    assert all(len(session.threads) == 1 for session in sessions)
    assert sessions[0].threads != sessions[1].threads
    assert threading.get_ident() not in sessions[0].threads | sessions[1].threads


def test_concurrent_calls_each_get_their_own_results() -> None:
    pool = SessionPool([Session("a"), Session("b")])
    calls = [["y" * (n + k) for n in range(1, 30)] for k in range(6)]
    with ThreadPoolExecutor(6) as threads:
        results = list(threads.map(lambda texts: run(pool, texts, 4), calls))
    for texts, out in zip(calls, results, strict=True):
        assert out[:, 0].tolist() == [len(t) for t in texts]


def test_a_failing_batch_raises_in_the_caller_and_the_pool_keeps_working() -> None:
    pool = SessionPool([Session("a"), Session("b")])
    with pytest.raises(ValueError, match="cannot embed 'boom'"):
        run(pool, ["ok", "fine", "boom", "good", "well"], 1)
    assert run(pool, ["ab", "abc"], 1)[:, 0].tolist() == [2, 3]


def test_a_call_with_no_batches_returns_at_once() -> None:
    pool = SessionPool([Session("a")])
    assert run(pool, [], 4).shape == (0, 1)


def test_a_pool_needs_a_session() -> None:
    with pytest.raises(ValueError, match="at least one session"):
        SessionPool([])


def session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("onnx-session")]


def test_the_threads_start_with_the_pool_and_end_once_it_is_gone() -> None:
    before = set(session_threads())
    pool = SessionPool([Session("a"), Session("b")])
    mine = [t for t in session_threads() if t not in before]
    assert len(mine) == 2
    assert run(pool, ["abc"], 1)[:, 0].tolist() == [3]
    del pool
    gc.collect()
    for thread in mine:
        thread.join(5)
        assert not thread.is_alive()
