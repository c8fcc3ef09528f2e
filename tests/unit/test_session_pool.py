"""The ONNX runtime's batch queue, with plain Python callables as its sessions."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retrieval.embedding import SessionPool


def fill_with_length(session: str, texts: Sequence[str], rows: np.ndarray, out: np.ndarray) -> None:
    for row in rows:
        if texts[row] == "boom":
            raise ValueError(f"{session} cannot embed {texts[row]!r}")
        out[row] = len(texts[row])


def run(pool: SessionPool, texts: list[str], size: int) -> np.ndarray:
    out = np.zeros((len(texts), 1), dtype=np.float32)
    pool.run(texts, [np.arange(start, min(start + size, len(texts))) for start in range(0, len(texts), size)], out)
    return out


def test_every_batch_lands_in_its_rows_and_both_sessions_take_batches() -> None:
    seen: set[str] = set()
    lock = threading.Lock()

    def record(session: str, texts: Sequence[str], rows: np.ndarray, out: np.ndarray) -> None:
        with lock:
            seen.add(session)
        threading.Event().wait(0.01)  # long enough that the other session takes the next batch
        fill_with_length(session, texts, rows, out)

    pool = SessionPool(["a", "b"], record)
    texts = ["x" * n for n in range(1, 41)]
    assert run(pool, texts, 3)[:, 0].tolist() == list(range(1, 41))
    assert seen == {"a", "b"}


def test_concurrent_calls_each_get_their_own_results() -> None:
    pool = SessionPool(["a", "b"], fill_with_length)
    calls = [["y" * (n + k) for n in range(1, 30)] for k in range(6)]
    with ThreadPoolExecutor(6) as threads:
        results = list(threads.map(lambda texts: run(pool, texts, 4), calls))
    for texts, out in zip(calls, results, strict=True):
        assert out[:, 0].tolist() == [len(t) for t in texts]


def test_a_failing_batch_raises_in_the_caller_and_the_pool_keeps_working() -> None:
    pool = SessionPool(["a", "b"], fill_with_length)
    with pytest.raises(ValueError, match="cannot embed 'boom'"):
        run(pool, ["ok", "fine", "boom", "good", "well"], 1)
    assert run(pool, ["ab", "abc"], 1)[:, 0].tolist() == [2, 3]


def test_a_call_with_no_batches_returns_at_once() -> None:
    pool = SessionPool(["a"], fill_with_length)
    assert run(pool, [], 4).shape == (0, 1)


class Owner:
    """Stands where ``OnnxRuntime`` does: the pool's ``run_batch`` is one of its methods."""

    def __init__(self) -> None:
        self.pool = SessionPool(["a", "b"], self.run_batch)

    def run_batch(self, session: str, texts: Sequence[str], rows: np.ndarray, out: np.ndarray) -> None:
        fill_with_length(session, texts, rows, out)


def session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("onnx-session-")]


def test_the_threads_end_once_the_runtime_owning_the_pool_is_gone() -> None:
    import gc

    before = set(session_threads())
    owner = Owner()
    assert run(owner.pool, ["abc"], 1)[:, 0].tolist() == [3]
    mine = [t for t in session_threads() if t not in before]
    assert len(mine) == 2
    del owner
    gc.collect()
    for thread in mine:
        thread.join(5)
        assert not thread.is_alive()
