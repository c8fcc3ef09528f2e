"""The torch runtime: sentence-transformers itself, the reference and the only choice on a GPU."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.embedding.runtime import ContentIds, Purpose

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class TorchRuntime:
    """sentence-transformers itself: the reference, and the only choice on a GPU.

    Document calls run one at a time: two worker threads encoding at once only split the same cores, while
    the other thread can parse, write indexes and commit meanwhile. Queries never take that lock, so a query
    never waits for a document batch. ``content_ids`` are ignored: the model tokenizes every text itself.
    """

    def __init__(self, model: SentenceTransformer, batch_size: int) -> None:
        self._model = model
        self._batch_size = batch_size
        self._document_lock = threading.Lock()

    def encode(self, texts: Sequence[str], purpose: Purpose, content_ids: ContentIds | None = None) -> np.ndarray:
        if purpose == "query":
            return self._encode(self._model.encode_query, texts)
        with self._document_lock:
            return self._encode(self._model.encode_document, texts)

    def _encode(self, encode: Callable[..., Any], texts: Sequence[str]) -> np.ndarray:
        vectors = encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
