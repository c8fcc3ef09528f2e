"""What every store keeps per chunk and how index names map to storage, shared by all backends.

Index names become directory and collection names, so they are checked in one place for every backend.
"""

from __future__ import annotations

import re
from typing import Any

from core.errors import BadInput
from core.types import ChunkRecord

_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def check_index_name(index: str) -> str:
    """Index names become directory names; refuse anything that could escape the root."""
    if not _INDEX_NAME.fullmatch(index) or ".." in index:
        raise BadInput(f"invalid index name {index!r}: use letters, digits, '_', '-' and '.'")
    return index


RANKING_FIELDS = ("document_id",)
"""The payload fields a ranking reads (fusion by document, the keyword document field): a vector search asked for
them alone returns nothing else, and the hits the ranking keeps read the rest (``VectorStore.payloads``)."""


def chunk_payload(record: ChunkRecord) -> dict[str, Any]:
    """What every store keeps per chunk: the caller's payload plus the text, for citations."""
    return {**record.payload, "text": record.text}
