"""Shared by the Qdrant Edge tests: random chunk vectors spread over documents, and polling the store's
maintenance thread (which works on its own schedule)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from core.ids import chunk_id
from core.types import ChunkRecord


def random_corpus(
    n: int, dim: int, seed: int = 0, prefix: str = "doc", documents: int = 30
) -> tuple[list[ChunkRecord], np.ndarray]:
    """``n`` chunks of ``documents`` documents (``<prefix><i % documents>``), standard-normal vectors."""
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    recs = [
        ChunkRecord(
            id=chunk_id(f"{prefix}{i % documents}", i), text=str(i), payload={"document_id": f"{prefix}{i % documents}"}
        )
        for i in range(n)
    ]
    return recs, vectors


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Polls ``condition`` every 50 ms for up to ``timeout_s``; the caller asserts it afterwards."""
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        threading.Event().wait(0.05)
