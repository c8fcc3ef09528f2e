"""The query path shared by the API, the CLI and the evaluation runner.

(cache lookup) -> retrieve (hybrid / vector / keyword) -> optionally answer: gather evidence sentences
from the top hits, abstain when they do not hold an answer, else answer in the requested mode
(``generation.modes``) -> one ``QueryLog`` row and one structured log line with the ids of every stage.
The log row is written whether the query succeeds, fails over, hits the cache or the client goes away.
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
from core.errors import NotFound, Unavailable
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
from generation.answer import NO_CONTEXT, Answer, PromptContext
from generation.backends.base import LLMBackend
from generation.cache import AnswerCache, CacheHit, CacheScope
from generation.evidence import EvidenceWeights, PairScorer, gather_evidence
from generation.modes import (
    AnswerInputs,
    AnswerMode,
    AnswerPolicy,
    GenerationOptions,
    answer_events,
    answer_mode,
    final_answer,
)
from generation.passages import evidence_passages
from generation.prompt import PROMPT_VERSION
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
    answer_mode: str | None = None
    """extractive, generative or auto; None = ``RAG_ANSWER_MODE``."""


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
    answer_mode: str | None = None
    fallback_reason: str | None = None
    abstain_reason: str | None = None
    groundedness: float | None = None
    answerability: float | None = None
    sentences: list[dict[str, Any]] = field(default_factory=list)
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


def generation_error(answer: Answer) -> str | None:
    """What the query log records as the error of a query answered without the LLM it asked for."""
    return next((e.get("detail") for e in answer.events if e.get("type") == "generation_unavailable"), None)


def answer_attributes(answer: Answer) -> dict[str, Any]:
    """What the answer span keeps: the mode and the backend that answered (after any fallback), tokens,
    groundedness and timings."""
    llm = {"backend": answer.backend, "model": answer.model}
    verdict = {"mode": answer.mode, "fallback_reason": answer.fallback_reason, "groundedness": answer.groundedness}
    return flat_attributes({"llm": llm, "answer": verdict, "usage": answer.usage, "timings_ms": answer.timings_ms})


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
        result.citations = [c.to_dict(scores.get(c.chunk_id)) for c in answer.citations]
        result.usage = dict(answer.usage)
        result.model = answer.model
        result.backend = answer.backend
        result.answer_mode = answer.mode
        result.fallback_reason = answer.fallback_reason
        result.abstain_reason = answer.abstain_reason
        result.groundedness = None if answer.groundedness is None else round(answer.groundedness, 4)
        result.answerability = None if answer.answerability is None else round(answer.answerability, 4)
        result.sentences = answer.sentences
        result.events.extend(answer.events)
        result.events.append(
            {
                "type": "answer",
                "mode": answer.mode,
                "fallback_reason": answer.fallback_reason,
                "abstain_reason": answer.abstain_reason,
                "groundedness": result.groundedness,
                "answerability": result.answerability,
            }
        )
        result.timings_ms.update({k: round(v, 2) for k, v in answer.timings_ms.items()})

    def _policy(self) -> AnswerPolicy:
        s = self.settings
        return AnswerPolicy(
            abstain_threshold=s.abstain_threshold,
            support_threshold=s.support_threshold,
            min_groundedness=s.auto_min_groundedness,
            fallback_on_unavailable=s.llm_fallback_retrieval_only,
        )

    def _weights(self) -> EvidenceWeights:
        s = self.settings
        return EvidenceWeights(
            lexical=s.evidence_lexical_weight,
            rank=s.evidence_rank_weight,
            budget_words=s.evidence_budget_words,
            max_sentences=s.evidence_max_sentences,
        )

    def _pair_scorer(self) -> PairScorer | None:
        """The configured cross-encoder, when it can score (query, sentence) pairs."""
        reranker = self.retriever.reranker
        return reranker if reranker is not None and hasattr(reranker, "scores") else None  # type: ignore[return-value]

    def _answer_inputs(
        self,
        collection: Collection,
        request: QueryRequest,
        result: QueryResult,
        question: str | None,
        context: PromptContext,
    ) -> AnswerInputs:
        """Evidence for the (standalone) query; the LLM, when asked, answers ``question`` with ``context``."""
        started = time.perf_counter()
        s = self.settings
        encoder = self.retriever.embedder_for(IndexProfile.of_collection(s, collection.options))
        with span("rag.evidence"):
            passages = evidence_passages(
                self.db, collection.index_version, result.hits, s.evidence_hits, s.evidence_neighbours
            )
            evidence = gather_evidence(
                request.query, passages, encoder, self._weights(), cross_encoder=self._pair_scorer()
            )
        return AnswerInputs(
            question=question or request.query,
            hits=result.hits,
            evidence=evidence,
            encoder=encoder,
            policy=self._policy(),
            generation=GenerationOptions(s.llm_max_tokens, s.llm_temperature, s.llm_context_window),
            llm=self.llm,
            context=self.prompt_context(context),
            timings_ms={"evidence": _ms(started)},
        )

    def _mode_name(self, request: QueryRequest) -> str:
        return request.answer_mode or self.settings.answer_mode

    # --- cache ------------------------------------------------------------------------------

    def _cache_scope(self, collection: Collection, request: QueryRequest) -> CacheScope:
        params = {
            "mode": request.mode,
            "top_k": request.top_k,
            "generate": request.generate,
            "filters": filters_to_json(request.filters),
            "model": self.llm.model if request.generate and self.llm is not None else None,
            "prompt": PROMPT_VERSION,
            "answer_mode": self._mode_name(request) if request.generate else None,
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
        mode = answer_mode(self._mode_name(request)) if request.generate else None
        lookup = self._cache_lookup(collection, request)
        if lookup is not None and lookup[2] is not None:
            result = lookup[2]
            result.timings_ms["total"] = _ms(started)
            self.record(result, request, None)
            return result
        result = self._retrieved(collection, request, lookup, events)
        error: str | None = None
        try:
            if mode is not None:
                inputs = self._answer_inputs(collection, request, result, question, context)
                with span("rag.answer", **{"rag.answer.mode": mode.name}) as current:
                    answer = final_answer(answer_events(mode, inputs))
                    if current.is_recording():
                        current.set_attributes(answer_attributes(answer))
                self._apply_answer(result, answer)
                error = generation_error(answer)
        except Unavailable as exc:
            error = exc.message
            raise
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
        mode = answer_mode(self._mode_name(request))
        lookup = self._cache_lookup(collection, request)
        if lookup is not None and lookup[2] is not None:
            return self._cached_events(lookup[2], request, started)
        result = self._retrieved(collection, request, lookup, events)
        inputs = self._answer_inputs(collection, request, result, question, context)
        return self._events(mode, inputs, request, result, started, lookup)

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
        mode: AnswerMode,
        inputs: AnswerInputs,
        request: QueryRequest,
        result: QueryResult,
        started: float,
        lookup: Any,
    ) -> Iterator[dict[str, Any]]:
        yield {
            "type": "retrieval",
            "query_id": result.query_id,
            "retrieval": result.retrieval,
            "candidates": result.citations,
        }
        error: str | None = None
        answering = start_span("rag.answer", **{"rag.answer.mode": mode.name})
        first_token: float | None = None
        try:
            for event in traced_steps(answer_events(mode, inputs), answering):
                if event["type"] in ("token", "reset"):
                    first_token = first_token or _ms(started)
                    yield event
                elif event["type"] == "done":
                    self._apply_answer(result, event["answer"])
                    answering.set_attributes(answer_attributes(event["answer"]))
                    error = generation_error(event["answer"])
                    # An answer written without the LLM has no generation ttft: its first token's time is it.
                    result.timings_ms.setdefault("ttft", first_token or _ms(started))
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
        if error is None:
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
            "answer_mode": result.answer_mode,
            "fallback_reason": result.fallback_reason,
            "abstained": result.abstained,
            "groundedness": result.groundedness,
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
