"""The query path shared by the API, the CLI and the evaluation runner.

(cache lookup) -> retrieve (hybrid / vector / keyword) -> optionally generate a cited answer -> one
``QueryLog`` row and one structured log line with the ids of every stage. The log row is written whether
the query succeeds, fails over, hits the cache or the client goes away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, select

from core.collections import get_collection
from core.config import Settings
from core.db import Database
from core.errors import BadInput, NotFound, Unavailable
from core.ids import new_id, sha256_hex
from core.metrics import (
    CACHE_HITS,
    CACHE_MISSES,
    EMPTY_RETRIEVALS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    QUERIES,
    observe_stages,
)
from core.models import Collection, QueryLog
from core.redaction import redact_text
from core.tracing import flat_attributes, recording_span, span, start_span, traced_steps, traced_stream
from core.types import Hit, SearchFilter
from generation.answer import NO_CONTEXT, Answer, PromptContext, generate_answer, stream_answer
from generation.backends.base import LLMBackend
from generation.cache import AnswerCache, CacheHit, CacheScope
from generation.prompt import PROMPT_VERSION, Source
from retrieval.retriever import HybridRetriever, IndexProfile, RetrievalResult

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "vector", "keyword"]
STAGES = ("vector", "keyword", "fused", "reranked")


@dataclass(frozen=True)
class QueryRequest:
    query: str
    top_k: int = 5
    mode: Mode = "hybrid"
    generate: bool = True
    filters: SearchFilter = field(default_factory=SearchFilter)
    use_cache: bool = True
    owner: str | None = None  # the API key id ("root" for the bootstrap key), for per-user data deletion


@dataclass
class QueryResult:
    query_id: str
    collection: str
    index_version: int
    answer: str | None
    abstained: bool | None
    citations: list[dict[str, Any]]
    retrieval: dict[str, list[str]]
    usage: dict[str, int]
    timings_ms: dict[str, float]
    model: str | None = None
    backend: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=lambda: {"hit": False})
    hits: list[Hit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("hits")
        return body

    @classmethod
    def from_cached(cls, value: dict[str, Any], hit: CacheHit, elapsed_ms: float) -> QueryResult:
        known = {f.name for f in fields(cls)} - {"query_id", "hits", "cache", "timings_ms", "events"}
        return cls(
            query_id=new_id(),
            timings_ms={"cache": elapsed_ms},
            events=[{"type": "cache_hit", "kind": hit.kind, "similarity": hit.similarity}],
            cache={"hit": True, "kind": hit.kind, "similarity": hit.similarity},
            **{k: v for k, v in value.items() if k in known},
        )


def hit_citation(hit: Hit) -> dict[str, Any]:
    p = hit.payload
    return {
        "number": None,
        "chunk_id": hit.id,
        "document_id": p.get("document_id"),
        "filename": p.get("filename"),
        "page": p.get("page"),
        "score": round(float(hit.score), 6),
        "text": p.get("text", ""),
        "ocr": bool(p.get("ocr", False)),
    }


def source_citation(source: Source, scores: dict[str, float]) -> dict[str, Any]:
    return {
        "number": source.number,
        "chunk_id": source.chunk_id,
        "document_id": source.document_id,
        "filename": source.filename,
        "page": source.page,
        "score": round(float(scores.get(source.chunk_id, source.score)), 6),
        "text": source.text,
        "ocr": source.ocr,
    }


def filters_to_json(flt: SearchFilter) -> dict[str, Any]:
    body = {k: v for k, v in asdict(flt).items() if v not in ((), None)}
    for key in ("uploaded_after", "uploaded_before"):
        if key in body:
            body[key] = body[key].isoformat()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in body.items()}


def logged_query_text(query: str, settings: Settings) -> str:
    """What the query log keeps of the question (``RAG_LOG_QUERY_TEXT``), redacted when logs are."""
    if settings.log_query_text == "none":
        return ""
    if settings.log_query_text == "hash":
        return "sha256:" + sha256_hex(query.encode())
    return redact_text(query) if settings.redact_logs else query


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def request_attributes(collection_name: str, request: QueryRequest) -> dict[str, Any]:
    asked = {"collection": collection_name, "mode": request.mode, "top_k": request.top_k, "generate": request.generate}
    return flat_attributes(asked)


def answer_attributes(answer: Answer) -> dict[str, Any]:
    """What the LLM span keeps: the backend that answered (after any fallback), tokens and timings."""
    llm = {"backend": answer.backend, "model": answer.model}
    return flat_attributes({"llm": llm, "usage": answer.usage, "timings_ms": answer.timings_ms})


class QueryService:
    """Built once per process; holds the retriever, the (lazy) LLM backend and the answer cache."""

    def __init__(
        self,
        db: Database,
        retriever: HybridRetriever,
        llm: LLMBackend | None,
        settings: Settings,
        cache: AnswerCache | None = None,
    ) -> None:
        self.db = db
        self.retriever = retriever
        self.llm = llm
        self.settings = settings
        self.cache = cache

    # --- pieces -----------------------------------------------------------------------------

    def retrieve(
        self, collection: Collection, request: QueryRequest, query_vector: np.ndarray | None = None
    ) -> RetrievalResult:
        """``query_vector``: the query's embedding when the semantic cache lookup already computed it."""
        attributes = request_attributes(collection.name, request) | {"rag.index_version": collection.index_version}
        with span("rag.retrieve", **attributes) as current:
            retrieved = self.retriever.retrieve(
                collection.index_name,
                request.query,
                mode=request.mode,
                top_k=request.top_k,
                flt=None if request.filters.is_empty() else request.filters,
                profile=IndexProfile.of_collection(self.settings, collection.options),
                query_vector=query_vector,
            )
            if current.is_recording():
                ids = {stage: [h.id for h in hits] for stage, hits in retrieved.stages.items()}
                current.set_attributes(flat_attributes({"retrieval": ids, "timings_ms": retrieved.timings_ms}))
        return retrieved

    def _retrieved(
        self,
        collection: Collection,
        request: QueryRequest,
        lookup: tuple[CacheScope, np.ndarray | None, Any] | None,
        events: list[dict[str, Any]] | None,
    ) -> QueryResult:
        """A cache miss: retrieve (reusing the lookup's query embedding) and start the result."""
        result = self._base_result(collection, self.retrieve(collection, request, lookup[1] if lookup else None))
        result.events.extend(events or [])
        return result

    def _base_result(self, collection: Collection, retrieved: RetrievalResult) -> QueryResult:
        return QueryResult(
            query_id=new_id(),
            collection=collection.name,
            index_version=collection.index_version,
            answer=None,
            abstained=None,
            citations=[hit_citation(h) for h in retrieved.hits],
            retrieval={stage: [h.id for h in retrieved.stages.get(stage, [])] for stage in STAGES},
            usage={"prompt_tokens": 0, "completion_tokens": 0},
            timings_ms={k: round(v, 2) for k, v in retrieved.timings_ms.items()},
            hits=retrieved.hits,
        )

    def _apply_answer(self, result: QueryResult, answer: Answer) -> None:
        scores = {h.id: h.score for h in result.hits}
        result.answer = answer.text
        result.abstained = answer.abstained
        result.citations = [source_citation(s, scores) for s in answer.citations]
        result.usage = dict(answer.usage)
        result.model = answer.model
        result.backend = answer.backend
        result.events.extend(answer.events)
        result.timings_ms.update({k: round(v, 2) for k, v in answer.timings_ms.items()})

    def _generation_kwargs(self) -> dict[str, Any]:
        return {
            "max_tokens": self.settings.llm_max_tokens,
            "temperature": self.settings.llm_temperature,
            "context_window": self.settings.llm_context_window,
        }

    def _generate(self, llm: LLMBackend, question: str, hits: list[Hit], context: PromptContext) -> Answer:
        with span("rag.generate", **{"rag.llm.backend": llm.name, "rag.llm.model": llm.model}) as current:
            answer = generate_answer(
                llm, question, hits, context=self.prompt_context(context), **self._generation_kwargs()
            )
            if current.is_recording():
                current.set_attributes(answer_attributes(answer))
        return answer

    def _require_llm(self) -> LLMBackend:
        if self.llm is None:
            raise BadInput('This deployment has no LLM backend (RAG_LLM_BACKEND=none); send "generate": false.')
        return self.llm

    # --- cache ------------------------------------------------------------------------------

    def _cache_scope(self, collection: Collection, request: QueryRequest) -> CacheScope:
        params = {
            "mode": request.mode,
            "top_k": request.top_k,
            "generate": request.generate,
            "filters": filters_to_json(request.filters),
            "model": self.llm.model if request.generate and self.llm is not None else None,
            "prompt": PROMPT_VERSION,
        }
        return CacheScope(collection.name, collection.index_version, collection.content_version, params)

    def _cache_lookup(
        self, collection: Collection, request: QueryRequest
    ) -> tuple[CacheScope, np.ndarray | None, QueryResult | None] | None:
        if self.cache is None or not self.cache.enabled or not request.use_cache:
            return None
        started = time.perf_counter()
        scope = self._cache_scope(collection, request)
        profile = IndexProfile.of_collection(self.settings, collection.options)
        vector = self.retriever.embedder_for(profile).embed_query(request.query) if self.cache.semantic else None
        hit = self.cache.lookup(scope, request.query, vector)
        cached = QueryResult.from_cached(hit.value, hit, _ms(started)) if hit else None
        return scope, vector, cached

    def _cache_store(
        self, lookup: tuple[CacheScope, np.ndarray | None, Any] | None, request: QueryRequest, result: QueryResult
    ) -> None:
        if lookup is None or self.cache is None:
            return
        scope, vector, _ = lookup
        value = result.to_dict()
        for volatile in ("query_id", "timings_ms", "events", "cache"):
            value.pop(volatile)
        self.cache.put(scope, request.query, vector, value)

    # --- entry points -----------------------------------------------------------------------

    def prompt_context(self, context: PromptContext) -> PromptContext:
        """Redaction applies to prompts that leave the machine (RAG_REDACT_PROMPTS with an external backend)."""
        external = self.settings.llm_backend == "openai"
        return replace(context, redact=self.settings.redact_prompts and external)

    def _retrieval_only(self, result: QueryResult, exc: Unavailable) -> None:
        """The last link of the fallback chain: sources without an answer, said plainly."""
        result.backend = "retrieval_only"
        result.events.append({"type": "generation_unavailable", "detail": exc.message})

    def query(
        self,
        collection_name: str,
        request: QueryRequest,
        *,
        question: str | None = None,
        context: PromptContext = NO_CONTEXT,
        events: list[dict[str, Any]] | None = None,
    ) -> QueryResult:
        """``request.query`` drives retrieval; ``question`` (default: the same) is what the model answers."""
        with span("rag.query", **request_attributes(collection_name, request)):
            return self._query(collection_name, request, question, context, events)

    def _query(
        self,
        collection_name: str,
        request: QueryRequest,
        question: str | None,
        context: PromptContext,
        events: list[dict[str, Any]] | None,
    ) -> QueryResult:
        started = time.perf_counter()
        collection = get_collection(self.db, collection_name)
        lookup = self._cache_lookup(collection, request)
        if lookup is not None and lookup[2] is not None:
            result = lookup[2]
            result.timings_ms["total"] = _ms(started)
            self.record(result, request, None)
            return result
        result = self._retrieved(collection, request, lookup, events)
        error: str | None = None
        try:
            if request.generate:
                answer = self._generate(self._require_llm(), question or request.query, result.hits, context)
                self._apply_answer(result, answer)
        except Unavailable as exc:
            error = exc.message
            if not (self.settings.llm_fallback_retrieval_only and self.llm is not None):
                raise
            self._retrieval_only(result, exc)
        finally:
            result.timings_ms["total"] = _ms(started)
            self.record(result, request, error)
        if error is None:
            self._cache_store(lookup, request, result)
        return result

    def stream(
        self,
        collection_name: str,
        request: QueryRequest,
        *,
        question: str | None = None,
        context: PromptContext = NO_CONTEXT,
        events: list[dict[str, Any]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events: ``retrieval`` first, then ``token`` pieces, then ``done`` with the full result.

        Lookup, retrieval and the backend check run before the first event, so their errors surface as
        ordinary HTTP errors instead of a broken stream.
        """
        return traced_stream(
            "rag.query",
            lambda: self._stream(collection_name, request, question, context, events),
            **request_attributes(collection_name, request),
        )

    def _stream(
        self,
        collection_name: str,
        request: QueryRequest,
        question: str | None,
        context: PromptContext,
        events: list[dict[str, Any]] | None,
    ) -> Iterator[dict[str, Any]]:
        started = time.perf_counter()
        collection = get_collection(self.db, collection_name)
        llm = self._require_llm()
        lookup = self._cache_lookup(collection, request)
        if lookup is not None and lookup[2] is not None:
            return self._cached_events(lookup[2], request, started)
        result = self._retrieved(collection, request, lookup, events)
        return self._events(llm, request, result, started, lookup, question or request.query, context)

    def _cached_events(self, result: QueryResult, request: QueryRequest, started: float) -> Iterator[dict[str, Any]]:
        result.timings_ms["total"] = _ms(started)
        self.record(result, request, None)
        yield {
            "type": "retrieval",
            "query_id": result.query_id,
            "retrieval": result.retrieval,
            "candidates": result.citations,
        }
        yield {"type": "token", "text": result.answer or ""}
        yield {"type": "done", **result.to_dict()}

    def _events(
        self,
        llm: LLMBackend,
        request: QueryRequest,
        result: QueryResult,
        started: float,
        lookup: Any,
        question: str,
        context: PromptContext,
    ) -> Iterator[dict[str, Any]]:
        yield {
            "type": "retrieval",
            "query_id": result.query_id,
            "retrieval": result.retrieval,
            "candidates": result.citations,
        }
        error: str | None = None
        generating = start_span("rag.generate", **{"rag.llm.backend": llm.name, "rag.llm.model": llm.model})
        try:
            answer_events = traced_steps(
                stream_answer(
                    llm, question, result.hits, context=self.prompt_context(context), **self._generation_kwargs()
                ),
                generating,
            )
            for event in answer_events:
                if event["type"] == "token":
                    yield event
                elif event["type"] == "done":
                    self._apply_answer(result, event["answer"])
                    generating.set_attributes(answer_attributes(event["answer"]))
        except Unavailable as exc:
            error = exc.message
            yield {"type": "error", "status": 503, "detail": exc.message}
            return
        except GeneratorExit:
            error = "client disconnected; generation stopped"
            result.events.append({"type": "client_disconnected"})
            raise
        finally:
            result.timings_ms["total"] = _ms(started)
            self.record(result, request, error)
        self._cache_store(lookup, request, result)
        yield {"type": "done", **result.to_dict()}

    def record(self, result: QueryResult, request: QueryRequest, error: str | None) -> None:
        cache_used = self.cache is not None and self.cache.enabled and request.use_cache
        observe_query(result, request.mode, cache_used)
        with self.db.session() as session:
            session.add(
                QueryLog(
                    id=result.query_id,
                    collection=result.collection,
                    index_version=result.index_version,
                    owner=request.owner,
                    query=logged_query_text(request.query, self.settings),
                    mode=request.mode,
                    top_k=request.top_k,
                    filters=filters_to_json(request.filters),
                    retrieval=result.retrieval,
                    answer=redact_text(result.answer) if result.answer and self.settings.redact_logs else result.answer,
                    citations=[{k: v for k, v in c.items() if k != "text"} for c in result.citations],
                    model=result.model,
                    backend=result.backend,
                    usage=result.usage,
                    timings_ms=result.timings_ms,
                    events=result.events,
                    error=error,
                    latency_ms=result.timings_ms.get("total", 0.0),
                )
            )
        fields = {
            "query_id": result.query_id,
            "collection": result.collection,
            "index_version": result.index_version,
            "mode": request.mode,
            "retrieval": result.retrieval,
            "model": result.model,
            "backend": result.backend,
            "usage": result.usage,
            "timings_ms": result.timings_ms,
            "cache": result.cache,
            "events": result.events,
            "error": error,
        }
        log.info("query", extra=fields)
        if (current := recording_span()) is not None:
            current.set_attributes(flat_attributes(fields))


def observe_query(result: QueryResult, mode: str, cache_used: bool) -> None:
    """The metrics side of ``QueryService.record``; a cached answer spent no tokens and ran no stage now."""
    QUERIES.labels(mode).inc()
    if not any(result.retrieval.values()):
        EMPTY_RETRIEVALS.labels(mode).inc()
    hit = bool(result.cache.get("hit"))
    if cache_used:
        (CACHE_HITS if hit else CACHE_MISSES).labels("answer").inc()
    if hit:
        return
    observe_stages({stage: ms for stage, ms in result.timings_ms.items() if stage != "total"})
    if result.backend and result.usage:
        model = result.model or "unknown"
        INPUT_TOKENS.labels(result.backend, model).inc(result.usage.get("prompt_tokens", 0))
        OUTPUT_TOKENS.labels(result.backend, model).inc(result.usage.get("completion_tokens", 0))


@dataclass(frozen=True)
class QueryLogFilter:
    collection: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_latency_ms: float | None = None
    errors_only: bool = False
    backend: str | None = None


def list_query_logs(db: Database, flt: QueryLogFilter, limit: int, offset: int) -> tuple[list[QueryLog], int]:
    """Newest first; the total counts every match, for pagination."""
    where = []
    if flt.collection is not None:
        where.append(QueryLog.collection == flt.collection)
    if flt.since is not None:
        where.append(QueryLog.created_at >= flt.since)
    if flt.until is not None:
        where.append(QueryLog.created_at <= flt.until)
    if flt.min_latency_ms is not None:
        where.append(QueryLog.latency_ms >= flt.min_latency_ms)
    if flt.errors_only:
        where.append(QueryLog.error.is_not(None))
    if flt.backend is not None:
        where.append(QueryLog.backend == flt.backend)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(QueryLog).where(*where)) or 0
        rows = session.scalars(
            select(QueryLog).where(*where).order_by(QueryLog.created_at.desc()).limit(limit).offset(offset)
        ).all()
        return list(rows), total


def get_query_log(db: Database, query_id: str) -> QueryLog:
    with db.session() as session:
        row = session.get(QueryLog, query_id)
        if row is None:
            raise NotFound(f"Query {query_id!r} does not exist.")
        return row
