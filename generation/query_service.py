"""The query path shared by the API, the CLI, conversations and the evaluation runner.

(cache lookup) -> retrieve (hybrid / vector / keyword) -> optionally answer: gather evidence sentences
from the top hits, abstain when they do not hold an answer, else answer in the requested mode
(``generation.modes``) -> one ``QueryLog`` row and one structured log line (``generation.query_log``).
The log row is written whether the query succeeds, fails over, hits the cache or the client goes away.
``query`` and ``stream`` share one opening (``_open``): everything that can fail with an HTTP error runs
before a stream's first event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from core.collections import get_collection
from core.config import Settings
from core.db import Database
from core.errors import Unavailable
from core.ids import new_id
from core.models import Collection
from core.tracing import flat_attributes, span, start_span, traced_steps, traced_stream
from generation.answer import NO_CONTEXT, Answer, PromptContext
from generation.backends.base import LLMBackend
from generation.cache import AnswerCache
from generation.evidence import EvidenceWeights, gather_evidence
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
from generation.query_cache import CacheLookup, cache_lookup, cache_scope, cache_store
from generation.query_log import record_query
from generation.query_types import STAGES, QueryRequest, QueryResult, hit_citation
from retrieval.retriever import HybridRetriever, IndexProfile, RetrievalResult

Event = dict[str, Any]


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


@dataclass
class Opened:
    """A query past its opening: a cache hit (``result`` is the cached one), or retrieved and ready to
    answer (``inputs`` is None for a retrieval-only query)."""

    started: float
    request: QueryRequest
    result: QueryResult
    lookup: CacheLookup | None
    mode: AnswerMode | None = None
    inputs: AnswerInputs | None = None

    @property
    def cache_hit(self) -> bool:
        return self.lookup is not None and self.lookup.cached is self.result


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

    def _answer_inputs(
        self,
        collection: Collection,
        request: QueryRequest,
        result: QueryResult,
        question: str | None,
        context: PromptContext,
        query_vector: np.ndarray | None,
    ) -> AnswerInputs:
        """Evidence for the (standalone) query, scored against the embedding retrieval already made of it
        (``query_vector``; None after a keyword-only search); the LLM, when asked, answers ``question``
        with ``context``."""
        started = time.perf_counter()
        s = self.settings
        encoder = self.retriever.embedder_for(IndexProfile.of_collection(s, collection.options))
        with span("rag.evidence"):
            passages = evidence_passages(
                self.db, collection.index_version, result.hits, s.evidence_hits, s.evidence_neighbours
            )
            evidence = gather_evidence(
                request.query,
                passages,
                encoder,
                self._weights(),
                question_vector=query_vector,
                cross_encoder=self.retriever.reranker,
            )
        return AnswerInputs(
            question=question or request.query,
            hits=result.hits,
            evidence=evidence,
            encoder=encoder,
            policy=self._policy(),
            generation=self._generation_options(request),
            llm=self.llm,
            context=self.prompt_context(context),
            timings_ms={"evidence": _ms(started)},
        )

    def _generation_options(self, request: QueryRequest) -> GenerationOptions:
        s = self.settings
        max_tokens = s.llm_max_tokens if request.max_tokens is None else min(request.max_tokens, s.llm_max_tokens)
        temperature = s.llm_temperature if request.temperature is None else request.temperature
        return GenerationOptions(max_tokens, temperature, s.llm_context_window)

    def _mode_name(self, request: QueryRequest) -> str:
        return request.answer_mode or self.settings.answer_mode

    # --- entry points -----------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """The LLM's tokenizer; without an LLM, an estimate of four characters a token."""
        return self.llm.count_tokens(text) if self.llm is not None else len(text) // 4 + 1

    def prompt_context(self, context: PromptContext) -> PromptContext:
        """Redaction applies to prompts that leave the machine (RAG_REDACT_PROMPTS with an external backend)."""
        external = self.settings.llm_backend == "openai"
        return replace(context, redact=self.settings.redact_prompts and external)

    def _open(
        self,
        collection_name: str,
        request: QueryRequest,
        question: str | None,
        context: PromptContext,
        events: list[Event] | None,
        *,
        answer: bool,
    ) -> Opened:
        """Collection, answer mode, cache lookup, retrieval and evidence: the part of a query that can still
        fail with an ordinary HTTP error. A cache hit stops after the lookup."""
        started = time.perf_counter()
        collection = get_collection(self.db, collection_name)
        mode = answer_mode(self._mode_name(request)) if answer else None
        scope = cache_scope(collection, request, self.llm, self._mode_name(request))
        lookup = cache_lookup(self.cache, self.retriever, self.settings, collection, request, scope)
        if lookup is not None and lookup.cached is not None:
            return Opened(started, request, lookup.cached, lookup)
        retrieved = self.retrieve(collection, request, lookup.query_vector if lookup else None)
        result = self._base_result(collection, retrieved)
        result.events.extend(events or [])
        opened = Opened(started, request, result, lookup, mode)
        if mode is not None:
            opened.inputs = self._answer_inputs(collection, request, result, question, context, retrieved.query_vector)
        return opened

    def _finish(self, opened: Opened, error: str | None) -> None:
        opened.result.timings_ms["total"] = _ms(opened.started)
        self.record(opened.result, opened.request, error)

    def query(
        self,
        collection_name: str,
        request: QueryRequest,
        *,
        question: str | None = None,
        context: PromptContext = NO_CONTEXT,
        events: list[Event] | None = None,
    ) -> QueryResult:
        """``request.query`` drives retrieval; ``question`` (default: the same) is what the model answers."""
        with span("rag.query", **request_attributes(collection_name, request)):
            opened = self._open(collection_name, request, question, context, events, answer=request.generate)
            if opened.cache_hit:
                self._finish(opened, None)
                return opened.result
            error: str | None = None
            try:
                if opened.mode is not None and opened.inputs is not None:
                    with span("rag.answer", **{"rag.answer.mode": opened.mode.name}) as current:
                        answer = final_answer(answer_events(opened.mode, opened.inputs))
                        if current.is_recording():
                            current.set_attributes(answer_attributes(answer))
                    self._apply_answer(opened.result, answer)
                    error = generation_error(answer)
            except Unavailable as exc:
                error = exc.message
                raise
            finally:
                self._finish(opened, error)
            if error is None:
                cache_store(self.cache, opened.lookup, request, opened.result)
            return opened.result

    def stream(
        self,
        collection_name: str,
        request: QueryRequest,
        *,
        question: str | None = None,
        context: PromptContext = NO_CONTEXT,
        events: list[Event] | None = None,
    ) -> Iterator[Event]:
        """Events: ``retrieval`` first, then ``token`` pieces (and ``reset`` when a streamed draft is being
        replaced), then ``done`` with the full result."""
        return traced_stream(
            "rag.query",
            lambda: self._events(self._open(collection_name, request, question, context, events, answer=True)),
            **request_attributes(collection_name, request),
        )

    def _events(self, opened: Opened) -> Iterator[Event]:
        result = opened.result
        yield {
            "type": "retrieval",
            "query_id": result.query_id,
            "retrieval": result.retrieval,
            "candidates": result.citations,
        }
        if opened.cache_hit or opened.mode is None or opened.inputs is None:
            self._finish(opened, None)
            yield {"type": "token", "text": result.answer or ""}
            yield {"type": "done", **result.to_dict()}
            return
        error: str | None = None
        first_token: float | None = None
        answering = start_span("rag.answer", **{"rag.answer.mode": opened.mode.name})
        try:
            for event in traced_steps(answer_events(opened.mode, opened.inputs), answering):
                if event["type"] in ("token", "reset"):
                    first_token = first_token or _ms(opened.started)
                    yield event
                elif event["type"] == "done":
                    self._apply_answer(result, event["answer"])
                    answering.set_attributes(answer_attributes(event["answer"]))
                    # An answer written without the LLM has no generation ttft: its first token's time is it.
                    result.timings_ms.setdefault("ttft", first_token or _ms(opened.started))
                    error = generation_error(event["answer"])
        except Unavailable as exc:
            error = exc.message
            yield {"type": "error", "status": 503, "detail": exc.message}
            return
        except GeneratorExit:
            error = "client disconnected; generation stopped"
            result.events.append({"type": "client_disconnected"})
            raise
        finally:
            self._finish(opened, error)
        if error is None:
            cache_store(self.cache, opened.lookup, opened.request, result)
        yield {"type": "done", **result.to_dict()}

    def record(self, result: QueryResult, request: QueryRequest, error: str | None) -> None:
        cache_used = self.cache is not None and self.cache.enabled and request.use_cache
        record_query(self.db, self.settings, result, request, error, cache_used)
