"""The ``Embedder``: dense text embeddings with sentence-transformers, loaded lazily once per process.

Loading a model costs seconds and hundreds of MB, so nothing is loaded until the first call that needs it
(``ragctl --help`` or a health check stays instant), and concurrent first calls load it exactly once. The
forward pass runs on the runtime the registry builds for ``RAG_EMBEDDING_BACKEND``
(``retrieval.embedding.registry``); token counting is ``retrieval.embedding.token_counting``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.config import Settings
from core.heap import freeze_long_lived, set_switch_interval
from retrieval.embedding.model import best_device, dimension, resolve_model_path, torch_threads
from retrieval.embedding.onnx_runtime import onnx_unsupported
from retrieval.embedding.registry import EMBEDDING_BACKENDS, resolve_backend
from retrieval.embedding.runtime import ContentIds, EncoderRuntime, RuntimeConfig
from retrieval.embedding.token_counting import TokenCounter

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class Embedder:
    """Embeds chunks and queries into L2-normalized float32 vectors (cosine == dot product).

    Each runtime orders concurrent document calls itself (one after the other, never splitting the cores
    between two calls), so the worker's other thread can parse, write indexes and commit meanwhile.
    """

    def __init__(
        self,
        model: str,
        device: str | None = None,
        batch_size: int = 32,
        backend: str = "auto",
        cache_dir: Path | None = None,
        switch_interval_ms: float | None = None,
    ) -> None:
        """``switch_interval_ms``: set as the process's GIL switch interval when the model loads (``None``
        leaves it alone); see ``core.heap``."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if backend != "auto" and backend not in EMBEDDING_BACKENDS:
            choices = ", ".join(["auto", *EMBEDDING_BACKENDS])
            raise ValueError(f"unknown embedding backend {backend!r}; choose from {choices}")
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._backend = backend
        self._cache_dir = cache_dir
        self._switch_interval_ms = switch_interval_ms
        self._model: SentenceTransformer | None = None
        self._runtime: EncoderRuntime | None = None
        self._counter: TokenCounter | None = None
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(
            settings.embedding_model,
            settings.embedding_device,
            settings.embed_batch_size,
            backend=settings.embedding_backend,
            cache_dir=settings.model_cache_dir,
            switch_interval_ms=settings.gil_switch_interval_ms,
        )

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def configured_backend(self) -> str:
        """The backend as configured (``auto`` unresolved): what a collection records."""
        return self._backend

    def sibling(self, model: str, backend: str) -> Embedder:
        """Another model or backend with this one's device, batch size and export cache."""
        return Embedder(
            model,
            self._device,
            self._batch_size,
            backend=backend,
            cache_dir=self._cache_dir,
            switch_interval_ms=self._switch_interval_ms,
        )

    @property
    def backend(self) -> str:
        """The backend that runs (``auto`` resolved against the device and the model's architecture)."""
        return resolve_backend(self._backend, self.device, onnx_unsupported(self.model) is None)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(
                        resolve_model_path(self._model_name), device=best_device(self._device)
                    )
        return self._model

    @property
    def runtime(self) -> EncoderRuntime:
        """Built on first use (an ONNX backend exports its file then, once per machine)."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    config = RuntimeConfig(self._batch_size, torch_threads(), self._cache_dir)
                    self._runtime = EMBEDDING_BACKENDS[self.backend](self.model, config)
                    freeze_long_lived()  # the model's libraries are the bulk of a process's objects
                    if self._switch_interval_ms is not None:
                        set_switch_interval(self._switch_interval_ms)
        return self._runtime

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dim(self) -> int:
        return dimension(self.model)

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads per text; longer texts are truncated by the model."""
        return int(self.model.max_seq_length)

    def embed_documents(self, texts: Sequence[str], content_ids: ContentIds | None = None) -> np.ndarray:
        """``content_ids``: per text, its ids from ``count_spans(...).ids`` and ``context_ids`` where the caller
        has them, so the runtime need not tokenize those texts again."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.runtime.encode(list(texts), "document", content_ids)

    def embed_query(self, text: str) -> np.ndarray:
        return self.runtime.encode([text], "query")[0]

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` without [CLS]/[SEP]; the chunker sizes chunks with it."""
        return self._token_counter().count(text)

    def count_spans(self, text: str) -> Callable[[int, int], int]:
        """``count(start, end) == count_tokens(text[start:end])`` for many spans of ``text``, from one
        tokenization of it where the tokenizer allows (``retrieval.token_spans``); that counter also gives
        the spans' ids (``OffsetSpans.ids``)."""
        return self._token_counter().spans(text)

    def context_ids(self, context: str) -> tuple[int, ...] | None:
        """The ids of a chunk's title and heading line, to go before the chunk's own ids (``f"{context}\\n"``
        tokenizes as its words then the chunk's); ``None`` where the tokenizer is not word-local."""
        return self._token_counter().context_ids(context)

    def _token_counter(self) -> TokenCounter:
        """Made once, on first use (it needs the model's tokenizer, so the model loads then)."""
        if self._counter is None:
            with self._lock:
                if self._counter is None:
                    self._counter = TokenCounter(self.model.tokenizer)
        return self._counter
