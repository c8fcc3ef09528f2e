"""The hybrid retriever: embed -> vector search and keyword search -> weighted RRF -> rerank -> top-k.

It is also the one writer of both indexes (``index_records``), so the vector store and the
keyword index always receive the same chunk ids and payloads.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from core.config import Settings
from core.errors import BadInput
from core.tracing import span
from core.types import MODES, STAGES, ChunkRecord, Hit, SearchFilter
from retrieval.cross_encoder import make_reranker
from retrieval.document_field import document_index, document_records, with_document_scores
from retrieval.embedding import Embedder
from retrieval.fusion import best_per_document, convex, documents_first, rrf
from retrieval.keyword import KeywordIndex, make_keyword_index
from retrieval.rerank import Reranker
from retrieval.text_analysis import DEFAULT_TOKENIZER
from retrieval.vector_store import VectorStore, make_vector_store


@dataclass(frozen=True)
class IndexProfile:
    """How one index version was built; its queries must embed and tokenize the same way.

    ``None`` fields mean the retriever's default embedder (the process settings). A collection records
    its profile in its options at creation and a re-index may change it (a new embedding model or keyword
    tokenizer needs a new index version: vectors and terms of two models never mix).
    """

    embedding_model: str | None = None
    embedding_backend: str | None = None
    keyword_tokenizer: str = DEFAULT_TOKENIZER

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexProfile:
        return cls(**{key: getattr(settings, key) for key in PROFILE_FIELDS})

    @classmethod
    def of_collection(cls, settings: Settings, options: Mapping[str, Any] | None) -> IndexProfile:
        """What the collection recorded; the process settings for what it did not (older collections)."""
        recorded = {key: value for key, value in (options or {}).items() if key in PROFILE_FIELDS}
        return replace(cls.from_settings(settings), **recorded)

    def as_options(self) -> dict[str, Any]:
        """The form a collection records in its options (``of_collection`` reads it back)."""
        return asdict(self)


PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(IndexProfile))
"""Settings (of the same names) that make up an index profile."""


DEFAULT_PROFILE = IndexProfile()


@dataclass
class RetrievalResult:
    """Every stage's hits (a stage not run is empty), the final hits and per-stage timings.

    ``hits`` carry full payloads; in the stage lists, hits found by the vector search alone carry only the
    payload fields a ranking reads (``retrieval.payload.RANKING_FIELDS``): stages are logged and scored by id.
    """

    stages: dict[str, list[Hit]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    hits: list[Hit] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    query_vector: np.ndarray | None = None
    """The query's embedding when a vector search ran (the answer's evidence scoring reuses it)."""


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    with span(f"rag.retrieve.{stage}"):
        yield
    timings[stage] = (time.perf_counter() - start) * 1000.0


class HybridRetriever:
    def __init__(
        self,
        embedder: Embedder,
        vectors: VectorStore,
        keywords: KeywordIndex,
        reranker: Reranker | None = None,
        *,
        candidates: int = 100,
        fusion: str = "rrf",
        rrf_k: int = 60,
        vector_weight: float = 1.0,
        keyword_weight: float = 1.0,
        rerank_top_m: int = 20,
        fusion_unit: str = "chunk",
        document_weight: float = 0.0,
        keyword_search_thread: bool = True,
    ) -> None:
        if candidates < 1 or rerank_top_m < 1:
            raise ValueError("candidates and rerank_top_m must be at least 1")
        if document_weight < 0:
            raise ValueError("document_weight must not be negative")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
        if fusion_unit not in FUSION_UNITS:
            raise ValueError(f"unknown fusion unit {fusion_unit!r}; use one of {', '.join(FUSION_UNITS)}")
        self.fusion_unit = fusion_unit
        self.fusion = fusion
        self.embedder = embedder
        self.vectors = vectors
        self.keywords = keywords
        self.reranker = reranker
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.weights = (vector_weight, keyword_weight)
        self.rerank_top_m = rerank_top_m
        self.document_weight = document_weight
        self._embedders: dict[tuple[str, str], Embedder] = {}
        self._embedders_lock = threading.Lock()
        # With ``keyword_search_thread``, a hybrid query's keyword search runs here while the calling thread
        # embeds the query and searches the vectors; whether the overlap beats the competition for the GIL and
        # the cores depends on the engines (bench/retrieval_latency.py times both ways).
        self._keyword_pool = (
            ThreadPoolExecutor(max_workers=KEYWORD_THREADS, thread_name_prefix="keyword-search")
            if keyword_search_thread
            else None
        )

    def embedder_for(self, profile: IndexProfile) -> Embedder:
        """The default embedder, or one per other (model, backend) pair, built once and kept (lazy)."""
        model = profile.embedding_model or self.embedder.name
        backend = profile.embedding_backend or self.embedder.configured_backend
        if (model, backend) == (self.embedder.name, self.embedder.configured_backend):
            return self.embedder
        with self._embedders_lock:
            embedder = self._embedders.get((model, backend))
            if embedder is None:
                embedder = self._embedders[(model, backend)] = self.embedder.sibling(model, backend)
            return embedder

    @classmethod
    def from_settings(cls, settings: Settings) -> HybridRetriever:
        """Every swappable part picked by settings (the reranker loads now; the embedder on first use)."""
        return cls.tuned(
            settings,
            Embedder.from_settings(settings),
            make_vector_store(settings),
            make_keyword_index(settings),
            make_reranker(settings),
        )

    @classmethod
    def tuned(
        cls,
        settings: Settings,
        embedder: Embedder,
        vectors: VectorStore,
        keywords: KeywordIndex,
        reranker: Reranker | None = None,
    ) -> HybridRetriever:
        """Given parts, with every ranking knob from ``settings``: the one place that reads them."""
        return cls(
            embedder,
            vectors,
            keywords,
            reranker,
            candidates=settings.candidates,
            fusion=settings.fusion,
            rrf_k=settings.rrf_k,
            vector_weight=settings.vector_weight,
            keyword_weight=settings.keyword_weight,
            rerank_top_m=settings.rerank_top_m,
            fusion_unit=settings.fusion_unit,
            document_weight=settings.keyword_document_weight,
            keyword_search_thread=settings.keyword_search_thread,
        )

    def retrieve(
        self,
        index: str,
        query: str,
        *,
        mode: str = "hybrid",
        top_k: int = 5,
        flt: SearchFilter | None = None,
        profile: IndexProfile = DEFAULT_PROFILE,
        query_vector: np.ndarray | None = None,
    ) -> RetrievalResult:
        """Both searches apply ``flt`` inside the search, so fusion only sees admissible chunks.

        Vector or keyword mode skips the other search and fusion ("fused" is that one list).
        With a reranker, the first ``rerank_top_m`` fused hits are re-scored and put first; any
        further fused hits follow in fused order when ``top_k`` asks for more.
        """
        if mode not in MODES:
            raise BadInput(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        if top_k < 1:
            raise BadInput("top_k must be at least 1")
        result = RetrievalResult()
        stages, timings = result.stages, result.timings_ms

        def keyword_stage() -> list[Hit]:
            with _timed(timings, "keyword"):
                return self._keyword_search(index, query, flt, profile.keyword_tokenizer)

        keywords = None
        if mode == "hybrid" and self._keyword_pool is not None:  # in the caller's tracing context: a child span
            keywords = self._keyword_pool.submit(contextvars.copy_context().run, keyword_stage)
        if mode in ("hybrid", "vector"):
            if query_vector is None:  # else the caller embedded it already (the semantic cache lookup)
                with _timed(timings, "embed"):
                    query_vector = self.embedder_for(profile).embed_query(query)
            with _timed(timings, "vector"):
                stages["vector"] = self.vectors.search(index, query_vector, self.candidates, flt, full_payload=False)
            result.query_vector = query_vector
        if keywords is not None:
            stages["keyword"] = keywords.result()
        elif mode in ("hybrid", "keyword"):
            stages["keyword"] = keyword_stage()
        if mode == "hybrid":
            with _timed(timings, "fuse"):
                stages["fused"] = self.fuse(stages["vector"], stages["keyword"])
        else:
            stages["fused"] = list(stages[mode])
        shown = max(top_k, self.rerank_top_m if self.reranker is not None else 0)
        light = {hit.id for hit in stages["vector"]} - {hit.id for hit in stages["keyword"]}
        ranked = self._full_payloads(index, stages["fused"], shown, light, timings)
        if self.reranker is not None and ranked:
            with _timed(timings, "rerank"):
                stages["reranked"] = self.reranker.rerank(query, ranked[: self.rerank_top_m])
            ranked = stages["reranked"] + ranked[self.rerank_top_m :]
        result.hits = ranked[:top_k]
        return result

    def _full_payloads(
        self, index: str, ranked: list[Hit], shown: int, light: set[str], timings: dict[str, float]
    ) -> list[Hit]:
        """``ranked`` with full payloads on its first ``shown`` hits: those in ``light`` (found by the vector
        search alone, which returned their ranking fields only) read by id. A hit whose point is gone since (its
        document deleted between the search and the read) is left out, and the next ones move up and are read."""
        if not any(hit.id in light for hit in ranked[:shown]):
            return ranked
        full: list[Hit] = []
        start = 0
        with _timed(timings, "payloads"):
            while len(full) < shown and start < len(ranked):
                batch = ranked[start : start + shown - len(full)]
                start += len(batch)
                found = self.vectors.payloads(index, [hit.id for hit in batch if hit.id in light])
                full += [
                    Hit(id=hit.id, score=hit.score, payload=found[hit.id]) if hit.id in light else hit
                    for hit in batch
                    if hit.id not in light or hit.id in found
                ]
        return full + ranked[start:]

    def _keyword_search(self, index: str, query: str, flt: SearchFilter | None, tokenizer: str) -> list[Hit]:
        """Chunk BM25, plus ``document_weight`` times each chunk's document's whole-text BM25 when that is on
        (``retrieval.document_field``). An index built before the document field existed has no document
        rows: its chunks then keep their own scores."""
        hits = self.keywords.search(index, query, self.candidates, flt, tokenizer=tokenizer)
        if not self.document_weight:
            return hits
        documents = self.keywords.search_documents(index, query, self.candidates, flt, tokenizer=tokenizer)
        return with_document_scores(hits, documents, self.document_weight, self.candidates)

    def fuse(self, vector_hits: list[Hit], keyword_hits: list[Hit]) -> list[Hit]:
        """The two searches' hits as one ranking, by this retriever's fusion rule and unit."""
        payloads = {hit.id: hit.payload for hit in vector_hits}
        payloads.update((hit.id, hit.payload) for hit in keyword_hits)  # full, where the vector ones may not be
        lists = [[(h.id, h.score) for h in vector_hits], [(h.id, h.score) for h in keyword_hits]]
        fuse = FUSIONS[self.fusion]
        fused = fuse(self, lists)
        if self.fusion_unit == "document":
            document_of = {chunk: str(payload.get("document_id", chunk)) for chunk, payload in payloads.items()}
            by_document = fuse(self, [best_per_document(scored, document_of) for scored in lists])
            fused = documents_first(fused, by_document, document_of)
        return [Hit(id=chunk, score=score, payload=payloads[chunk]) for chunk, score in fused]

    def _rrf(self, lists: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
        return rrf([[item for item, _ in scored] for scored in lists], k=self.rrf_k, weights=self.weights)

    def _convex(self, lists: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
        """Min-max normalized scores of each list, mixed by the weights (both scores are higher-is-better)."""
        return convex(lists, weights=self.weights)

    def index_records(
        self, index: str, records: Sequence[ChunkRecord], profile: IndexProfile = DEFAULT_PROFILE
    ) -> None:
        """Embed and write ``records`` to both indexes under the same ids (idempotent by id).

        Both the embedder and the keyword index see each record's ``searchable_text`` (the chunk with its
        title and heading path); the payload keeps the chunk text itself for citations. The keyword index
        also gets one row per document (``retrieval.document_field``), so ``records`` must hold every chunk
        of each document they touch.
        """
        if not records:
            return
        embedder = self.embedder_for(profile)
        vectors = embedder.embed_documents(
            [record.searchable_text for record in records], [record.content_ids for record in records]
        )
        if not self.vectors.exists(index):
            self.vectors.create(index, embedder.dim)
        self.vectors.upsert(index, records, vectors)
        self.keywords.add(index, records, tokenizer=profile.keyword_tokenizer)
        self.keywords.add(document_index(index), document_records(records), tokenizer=profile.keyword_tokenizer)

    def delete_document(self, index: str, document_id: str) -> None:
        self.vectors.delete_document(index, document_id)
        self.keywords.delete_document(index, document_id)
        self.keywords.delete_document(document_index(index), document_id)

    def drop_index(self, index: str) -> None:
        self.vectors.drop(index)
        self.keywords.drop(index)
        self.keywords.drop(document_index(index))

    def close(self) -> None:
        if self._keyword_pool is not None:
            self._keyword_pool.shutdown()
        self.vectors.close()
        self.keywords.close()


KEYWORD_THREADS = 8
"""Keyword searches of concurrent hybrid queries that run at once; more queue (each takes milliseconds)."""

# How the two candidate lists become one ranking; chosen on SciFact train (bench/tune_fusion.py).
FUSION_UNITS = ("document", "chunk")
FUSIONS: dict[str, Callable[[HybridRetriever, list[list[tuple[str, float]]]], list[tuple[str, float]]]] = {
    "rrf": HybridRetriever._rrf,
    "convex": HybridRetriever._convex,
}
