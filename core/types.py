"""Plain data shared by every layer: hits, filters and chunk records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

RetrievalMode = Literal["hybrid", "vector", "keyword"]
"""hybrid: both searches fused; vector or keyword: one search alone. The one spelling of the modes
(here, on the bottom floor, so the HTTP schemas and the Python client share it without the retriever)."""
MODES: tuple[RetrievalMode, ...] = get_args(RetrievalMode)
STAGES: tuple[str, ...] = ("vector", "keyword", "fused", "reranked")
"""The ranked lists one retrieval records, in order; every log and report uses these names."""


@dataclass(frozen=True)
class SearchFilter:
    """Restricts both searches *before* fusion. Empty fields mean "no restriction"."""

    document_ids: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    uploaded_after: datetime | None = None
    uploaded_before: datetime | None = None

    def is_empty(self) -> bool:
        return not (self.document_ids or self.filenames or self.tags or self.uploaded_after or self.uploaded_before)

    def matches(self, payload: dict[str, Any]) -> bool:
        """Reference semantics of the filter on a chunk payload (backends must agree with it)."""
        if self.document_ids and payload.get("document_id") not in self.document_ids:
            return False
        if self.filenames and payload.get("filename") not in self.filenames:
            return False
        if self.tags and not set(self.tags) & set(payload.get("tags") or ()):
            return False
        uploaded = payload.get("uploaded_at")
        if self.uploaded_after is not None and (uploaded is None or uploaded < self.uploaded_after.timestamp()):
            return False
        return not (
            self.uploaded_before is not None and (uploaded is None or uploaded > self.uploaded_before.timestamp())
        )


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk as both indexes store it. ``payload`` holds what filters and citations need.

    ``index_text`` is what both searches match on (the chunk with its title and heading path); ``text``
    stays what citations show. Unset, the chunk text is used for both.
    """

    id: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)
    index_text: str | None = None
    # Token ids of ``searchable_text`` (no special tokens) when the chunker already had them; only an
    # optimization, so not part of equality.
    content_ids: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def searchable_text(self) -> str:
        return self.index_text if self.index_text is not None else self.text


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)
