"""Scale-out vector store: a Qdrant server or cluster through ``qdrant-client``, one collection per index.

Same payloads, ids and filter semantics as the embedded Qdrant Edge store, so an index can move
between them by re-indexing. A client in local mode (``QdrantClient(location=":memory:")`` or
``path=...``) can be injected; tests use it because no server runs on the test machines.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException

from core.errors import BadInput, Conflict, NotFound, Unavailable
from core.types import ChunkRecord, Hit, SearchFilter
from retrieval.payload import RANKING_FIELDS, check_index_name, chunk_payload
from retrieval.qdrant_filters import PAYLOAD_FIELDS, qdrant_filter

PAYLOAD_INDEXES = {field: models.PayloadSchemaType(kind) for field, kind in PAYLOAD_FIELDS.items()}
_UPSERT_BATCH = 256


def server_filter(flt: SearchFilter | None) -> models.Filter | None:
    return qdrant_filter(flt, models)


class QdrantServerStore:
    name = "qdrant_server"

    def __init__(self, url: str | None = None, api_key: str | None = None, client: QdrantClient | None = None):
        if client is None:
            if not url:
                raise ValueError("QdrantServerStore needs a url or a client")
            client = QdrantClient(url=url, api_key=api_key)
        self._client = client
        options = client.init_options
        # Local mode is plain Python over dicts and not thread-safe; a server serializes nothing.
        self._local = bool(options.get("path")) or options.get("location") == ":memory:"
        self._lock = threading.RLock()
        # Collections seen to exist, so a search costs one round trip, not two. A collection
        # dropped by another process then fails that search loudly instead of returning nothing.
        self._known: set[str] = set()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialize local mode; turn a server that cannot be reached into a 503 the client may retry."""
        try:
            with self._lock if self._local else nullcontext():
                yield
        except (ResponseHandlingException, httpx.TransportError, ConnectionError) as exc:
            raise Unavailable("The vector store (Qdrant) is unreachable; retry in a few seconds.") from exc

    def create(self, index: str, dim: int) -> None:
        check_index_name(index)
        if dim < 1:
            raise BadInput(f"vector dimension must be positive, got {dim}")
        with self._guard():
            if self._client.collection_exists(index):
                vectors = self._client.get_collection(index).config.params.vectors
                stored = vectors.size if isinstance(vectors, models.VectorParams) else None
                if stored != dim:
                    raise Conflict(f"vector index {index!r} holds {stored}-dimensional vectors, not {dim}")
                self._known.add(index)
                return
            self._client.create_collection(
                index, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )
            if not self._local:  # local mode ignores payload indexes (and warns about them)
                for field, schema in PAYLOAD_INDEXES.items():
                    self._client.create_payload_index(index, field, field_schema=schema, wait=True)
            self._known.add(index)

    def drop(self, index: str) -> None:
        with self._guard():
            self._known.discard(index)
            if self._client.collection_exists(check_index_name(index)):
                self._client.delete_collection(index)

    def exists(self, index: str) -> bool:
        if index in self._known:
            return True
        with self._guard():
            found = self._client.collection_exists(check_index_name(index))
        if found:
            self._known.add(index)
        return found

    def upsert(self, index: str, records: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(records):
            raise BadInput(f"got {vectors.shape} vectors for {len(records)} records")
        if not self.exists(index):
            raise NotFound(f"vector index {index!r} does not exist")
        with self._guard():
            for start in range(0, len(records), _UPSERT_BATCH):
                batch = records[start : start + _UPSERT_BATCH]
                rows = vectors[start : start + _UPSERT_BATCH].tolist()
                points = [
                    models.PointStruct(id=record.id, vector=row, payload=chunk_payload(record))
                    for record, row in zip(batch, rows, strict=True)
                ]
                self._client.upsert(index, points=points, wait=True)

    def delete_document(self, index: str, document_id: str) -> None:
        if not self.exists(index):
            return
        condition = models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))
        selector = models.FilterSelector(filter=models.Filter(must=[condition]))
        with self._guard():
            self._client.delete(index, points_selector=selector, wait=True)

    def search(
        self, index: str, vector: np.ndarray, limit: int, flt: SearchFilter | None = None, full_payload: bool = True
    ) -> list[Hit]:
        if limit < 1 or not self.exists(index):
            return []
        with self._guard():
            response = self._client.query_points(
                index,
                query=np.asarray(vector, dtype=np.float32).tolist(),
                query_filter=server_filter(flt),
                limit=limit,
                with_payload=True if full_payload else list(RANKING_FIELDS),
            )
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in response.points]

    def payloads(self, index: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids or not self.exists(index):
            return {}
        with self._guard():
            records = self._client.retrieve(index, list(ids), with_payload=True)
        return {str(r.id): dict(r.payload or {}) for r in records}

    def count(self, index: str) -> int:
        if not self.exists(index):
            return 0
        with self._guard():
            return int(self._client.count(index, exact=True).count)

    def awaiting_build(self, index: str) -> int:
        """0: searches here never ask for ``indexed_only``, so the server scans the points its optimizer has not
        indexed yet and every point is searchable once written."""
        return 0

    def close(self) -> None:
        with self._guard():
            self._client.close()
