"""The vector-store Protocol and the registry that picks an implementation from settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from core.config import Settings
from core.types import ChunkRecord, Hit, SearchFilter


class VectorStore(Protocol):
    """Dense-vector index keyed by chunk id. ``index`` is a physical index name (collection + version)."""

    name: str

    def create(self, index: str, dim: int) -> None:
        """Create the index if missing (idempotent)."""

    def drop(self, index: str) -> None: ...

    def exists(self, index: str) -> bool: ...

    def upsert(self, index: str, records: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        """Insert or overwrite by chunk id; the same ids twice never duplicate."""

    def delete_document(self, index: str, document_id: str) -> None: ...

    def search(
        self, index: str, vector: np.ndarray, limit: int, flt: SearchFilter | None = None, full_payload: bool = True
    ) -> list[Hit]:
        """Best-first hits; ``flt`` is applied inside the search, never after it. Without ``full_payload`` each
        hit's payload holds only ``payload.RANKING_FIELDS`` (less to read and convert per hit); ``payloads``
        reads the rest for the hits a ranking keeps."""

    def payloads(self, index: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The full payloads of the points of ``ids`` that exist, by id (unknown ids are left out)."""

    def count(self, index: str) -> int: ...

    def awaiting_build(self, index: str) -> int:
        """Points that searches skip until their index build lands (0: every point is searchable now)."""

    def close(self) -> None: ...


def _qdrant_edge(settings: Settings) -> VectorStore:
    from retrieval.qdrant_edge import QdrantEdgeStore

    return QdrantEdgeStore(
        settings.vector_dir,
        flush_interval_s=settings.edge_flush_interval_s,
        optimize_idle_s=settings.edge_optimize_idle_s,
        optimize_max_delay_s=settings.edge_optimize_max_delay_s,
        quantization=settings.edge_quantization,
        vectors_on_disk=settings.edge_vectors_on_disk,
        build_in_subprocess=settings.edge_build_in_subprocess,
        hnsw_ef_per_million=settings.edge_hnsw_ef_per_million,
        indexed_only_min_coverage=settings.edge_indexed_only_min_coverage,
    )


def _qdrant_server(settings: Settings) -> VectorStore:
    from retrieval.qdrant_server import QdrantServerStore

    assert settings.qdrant_url is not None
    return QdrantServerStore(url=settings.qdrant_url, api_key=settings.qdrant_api_key)


VECTOR_STORES: dict[str, Callable[[Settings], VectorStore]] = {
    "qdrant_edge": _qdrant_edge,
    "qdrant_server": _qdrant_server,
}


def vector_backend_name(settings: Settings) -> str:
    return "qdrant_server" if settings.qdrant_url else "qdrant_edge"


def make_vector_store(settings: Settings) -> VectorStore:
    return VECTOR_STORES[vector_backend_name(settings)](settings)
