"""What every embedding runtime shares: the call it answers and how it is configured.

A runtime runs the model's forward pass only; the ``Embedder`` above it owns loading, locking and token
counting, so a runtime can be swapped (``retrieval.embedding.registry``) without touching its callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

Purpose = Literal["document", "query"]

ContentIds = Sequence[Sequence[int] | None]
"""Per text, its token ids without special tokens when the caller already has them (``None``: not known)."""


class EncoderRuntime(Protocol):
    """Runs the model's forward pass; the Embedder above it owns loading, locking and token counting."""

    def encode(self, texts: Sequence[str], purpose: Purpose, content_ids: ContentIds | None = None) -> np.ndarray:
        """L2-normalized float32 rows, one per text, in input order. A runtime may use ``content_ids`` (which
        must be what the model's tokenizer makes of the texts) instead of tokenizing, or ignore them."""
        ...


@dataclass(frozen=True)
class RuntimeConfig:
    """What a runtime is built with besides the model: texts per forward pass, cores to use, export cache."""

    batch_size: int
    threads: int
    cache_dir: Path | None
