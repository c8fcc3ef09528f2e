"""A collection's profile: the settings its documents are chunked and indexed with.

A collection records them in its options when it is created, and a re-index may change them. The part that
decides how an index is searched (embedding model and runtime, keyword tokenizer) is
``retrieval.retriever.IndexProfile``, the one source of those field names; chunking adds the rest.
"""

from __future__ import annotations

from typing import Any

from core.config import Settings
from retrieval.retriever import PROFILE_FIELDS, IndexProfile

CHUNKING_OPTIONS = ("chunk_size_tokens", "chunk_overlap_tokens")
COLLECTION_OPTIONS = (*CHUNKING_OPTIONS, *PROFILE_FIELDS)
"""Settings a collection (through a re-index) may override for its own documents."""


def effective_settings(settings: Settings, options: dict[str, Any] | None) -> Settings:
    """The process settings with the collection's overrides. Only options that differ make a new
    ``Settings`` (and are validated): most collections record what the process settings already say, and
    this runs once per document."""
    overrides = {k: v for k, v in (options or {}).items() if k in COLLECTION_OPTIONS and getattr(settings, k) != v}
    return Settings.model_validate({**settings.model_dump(), **overrides}) if overrides else settings


def profile_options(settings: Settings) -> dict[str, Any]:
    """Recorded on every new collection: its indexes must keep being searched the way they were built,
    whatever the process settings say later (changing that takes a re-index)."""
    return IndexProfile.from_settings(settings).as_options()
