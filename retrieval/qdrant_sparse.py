"""BM25 on Qdrant sparse vectors: one keyword index shared by every API replica and worker.

Qdrant computes the IDF half of BM25 itself (``Modifier.IDF``: ln(1 + (N - n + 0.5) / (n + 0.5)), Lucene's
variant, the one bm25s uses too) from the document frequencies it holds, so documents can be added and
removed without re-weighting the rest. The term-frequency half is baked into each document's vector:

    value(t, d) = tf / (tf + k1 * (1 - b + b * |d| / avg_len))

and a query is a vector of term counts, so a point's dot product with it is its BM25 score. The classic
``(k1 + 1)`` numerator is left out, as Lucene 8+ and bm25s's ``lucene`` method do: a constant factor
changes no ranking, and without it the scores equal the default in-process backend's.

``avg_len`` is a fixed number per index rather than the live corpus mean, as in Qdrant's own BM25 recipe:
a running mean would change the weight of every document already stored, and Qdrant has no place to
keep it consistent across writers. Chunks are cut to a token budget, so their lengths cluster near one
value; ``estimated_avg_len`` derives it from the chunk size. A wrong estimate only shifts how much
length matters (``b``), never which terms match.

Tokens come from ``retrieval.text_analysis.tokenize``, the analyzer the in-process BM25 backends use, so
the three backends agree on what a term is. A term's id is its CRC-32: stable across processes and
releases with no shared vocabulary to store; two terms sharing an id merely merge their statistics.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator, Sequence

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from core.types import ChunkRecord, Hit, SearchFilter
from retrieval.bm25_params import Bm25Params, for_index
from retrieval.document_field import DocumentRowsAsHits
from retrieval.payload import check_index_name, chunk_payload
from retrieval.qdrant_filters import PAYLOAD_FIELDS, qdrant_filter
from retrieval.text_analysis import DEFAULT_TOKENIZER, analyzer

VECTOR = "bm25"
COLLECTION_SUFFIX = "__bm25"
UPSERT_BATCH = 256
# BM25 terms per embedding-model token in English prose (stopwords dropped, word pieces merged),
# measured on SciFact abstracts with all-MiniLM-L6-v2's tokenizer; see tests/integration/test_qdrant_sparse.py.
TERMS_PER_TOKEN = 0.47
PAYLOAD_INDEXES = {field: models.PayloadSchemaType(kind) for field, kind in PAYLOAD_FIELDS.items()}


def estimated_avg_len(chunk_size_tokens: int) -> float:
    return chunk_size_tokens * TERMS_PER_TOKEN


def term_id(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


def document_vector(terms: Sequence[str], avg_len: float, params: Bm25Params) -> models.SparseVector:
    """Saturated, length-normalised term frequencies keyed by term id (see the module docstring)."""
    norm = params.k1 * (1 - params.b + params.b * len(terms) / avg_len)
    weights: dict[int, float] = {}
    for term, tf in Counter(terms).items():
        key = term_id(term)
        weights[key] = weights.get(key, 0.0) + tf / (tf + norm)
    return models.SparseVector(indices=list(weights), values=list(weights.values()))


def query_vector(terms: Sequence[str]) -> models.SparseVector:
    """Each term weighted by its count in the query: bm25s and rank-bm25 both sum over the query's tokens
    repeats included, so the three backends score a query alike."""
    counts: Counter[int] = Counter(term_id(term) for term in terms)
    return models.SparseVector(indices=list(counts), values=[float(n) for n in counts.values()])


def _batches(records: Sequence[ChunkRecord], size: int) -> Iterator[Sequence[ChunkRecord]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


class QdrantSparseIndex(DocumentRowsAsHits):
    """``KeywordIndex`` on a Qdrant server (or a local-mode client): index ``x`` is collection ``x__bm25``,
    next to the vector store's dense collection ``x``."""

    name = "qdrant_sparse"

    def __init__(self, client: QdrantClient, *, avg_len: float) -> None:
        self.client = client
        self.avg_len = avg_len
        options = client.init_options
        self._local = bool(options.get("path")) or options.get("location") == ":memory:"
        self._known: set[str] = set()

    def _collection(self, index: str) -> str:
        return check_index_name(index) + COLLECTION_SUFFIX

    def _ensure(self, collection: str) -> None:
        if collection in self._known or self.client.collection_exists(collection):
            self._known.add(collection)
            return
        try:
            self.client.create_collection(
                collection,
                vectors_config={},
                sparse_vectors_config={VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
        except (UnexpectedResponse, ValueError):
            # Another replica or worker created it between the check and the create.
            if not self.client.collection_exists(collection):
                raise
        if not self._local:  # local mode ignores payload indexes (and warns about them)
            for field, schema in PAYLOAD_INDEXES.items():
                self.client.create_payload_index(collection, field, field_schema=schema, wait=True)
        self._known.add(collection)

    def add(self, index: str, records: Sequence[ChunkRecord], tokenizer: str = DEFAULT_TOKENIZER) -> None:
        tokenize = analyzer(tokenizer).tokenize
        params = for_index(index)
        collection = self._collection(index)
        self._ensure(collection)
        for batch in _batches(records, UPSERT_BATCH):
            points = [
                models.PointStruct(
                    id=record.id,
                    vector={VECTOR: document_vector(tokenize(record.searchable_text), self.avg_len, params)},
                    payload=chunk_payload(record),
                )
                for record in batch
            ]
            self.client.upsert(collection, points=points, wait=True)

    def delete_document(self, index: str, document_id: str) -> None:
        collection = self._collection(index)
        if not self.client.collection_exists(collection):
            return
        selector = models.FilterSelector(filter=qdrant_filter(SearchFilter(document_ids=(document_id,)), models))
        self.client.delete(collection, points_selector=selector, wait=True)

    def search(
        self, index: str, query: str, limit: int, flt: SearchFilter | None = None, tokenizer: str = DEFAULT_TOKENIZER
    ) -> list[Hit]:
        collection = self._collection(index)
        terms = analyzer(tokenizer).tokenize(query)
        if limit < 1 or not terms or not (collection in self._known or self.client.collection_exists(collection)):
            return []
        self._known.add(collection)
        response = self.client.query_points(
            collection,
            query=query_vector(terms),
            using=VECTOR,
            query_filter=qdrant_filter(flt, models),
            limit=limit,
            with_payload=True,
        )
        return [
            Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in response.points
            if p.score > 0
        ]

    def count(self, index: str) -> int:
        collection = self._collection(index)
        if not self.client.collection_exists(collection):
            return 0
        return self.client.count(collection, exact=True).count

    def drop(self, index: str) -> None:
        collection = self._collection(index)
        self._known.discard(collection)
        if self.client.collection_exists(collection):
            self.client.delete_collection(collection)

    def close(self) -> None:
        self.client.close()
