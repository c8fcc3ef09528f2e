"""``SearchFilter`` as Qdrant payload conditions, for Qdrant Edge and qdrant-client alike.

Both libraries spell the same filter model with the same class and field names (``Filter``,
``FieldCondition``, ``MatchAny``, a float range), so one translation serves both: the caller passes the
library's classes. No library is imported here, so the embedded store never loads qdrant-client.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.types import SearchFilter

# Payload fields that filters use, and their kind; each store indexes them so Qdrant's planner can filter
# inside the vector search instead of after it.
PAYLOAD_FIELDS = {"document_id": "keyword", "filename": "keyword", "tags": "keyword", "uploaded_at": "float"}


class FilterModels(Protocol):
    """The classes of one Qdrant library that a filter is built from."""

    Filter: Any
    FieldCondition: Any
    MatchAny: Any
    Range: Any


def qdrant_filter(flt: SearchFilter | None, models: FilterModels) -> Any:
    """``flt`` as a ``models.Filter`` (same semantics as ``SearchFilter.matches``); None when it admits all."""
    if flt is None or flt.is_empty():
        return None
    must: list[Any] = []
    for key, values in (("document_id", flt.document_ids), ("filename", flt.filenames), ("tags", flt.tags)):
        if values:
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(values))))
    if flt.uploaded_after is not None or flt.uploaded_before is not None:
        after = flt.uploaded_after.timestamp() if flt.uploaded_after is not None else None
        before = flt.uploaded_before.timestamp() if flt.uploaded_before is not None else None
        must.append(models.FieldCondition(key="uploaded_at", range=models.Range(gte=after, lte=before)))
    return models.Filter(must=must)
