"""Run an evaluation set through the real platform: ingest pipeline, query path, LLM backend.

One run ingests the corpus once (reusing whatever the collection already holds: uploads dedupe by
content hash) and then asks every question in each requested mode. Retrieval is scored from the id lists
the query path returns for every stage, asked deep enough (``RUN_DEPTH``) for recall@100; answers come
from a second, normal query (``top_k`` hits, generation on) in the primary mode only, because generation
costs seconds per question and does not depend on how the other modes rank.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from tqdm import tqdm

from core.collections import get_collection
from core.errors import NotFound, RagError
from core.models import UNFINISHED, Chunk, Document, DocumentStatus
from evaluation.answer_metrics import AnswerRecord, abstained, judge_faithfulness, score_answer, summarize_answers
from evaluation.datasets import EvalDataset, EvalQuestion
from evaluation.metrics import RUN_DEPTH, doc_ranking, latency_percentiles, score_rankings
from generation.modes import ANSWER_MODES
from generation.prompt import PROMPT_VERSION
from generation.query_types import STAGES, Mode, QueryRequest, QueryResult
from ingest.service import create_collection, index_in_batches, submit_document
from retrieval.retriever import MODES
from retrieval.vector_store import vector_backend_name
from runtime.services import Services

ALL_MODES: tuple[Mode, ...] = tuple(reversed(MODES))
"""``--mode all`` runs the single searches first, then their fusion."""
PRIMARY_ORDER: tuple[Mode, ...] = MODES
"""The mode a report leads with when several ran (MODES is ordered best first)."""
STAGE_TIMINGS: dict[str, tuple[str, ...]] = {
    "vector": ("embed", "vector"),
    "keyword": ("keyword",),
    "fused": ("fuse",),
    "reranked": ("rerank",),
}
"""The retriever timings that make up each stage (the vector stage includes embedding the query)."""
SETTINGS_IN_REPORT = (
    "embedding_model",
    "embedding_device",
    "chunk_size_tokens",
    "chunk_overlap_tokens",
    "keyword_backend",
    "keyword_document_weight",
    "candidates",
    "fusion",
    "fusion_unit",
    "rrf_k",
    "vector_weight",
    "keyword_weight",
    "reranker_model",
    "rerank_top_m",
    "llm_backend",
    "llm_model",
    "llm_temperature",
    "llm_max_tokens",
    "llm_context_window",
    "llm_threads",
    "llm_repeat_penalty",
    "answer_mode",
    "abstain_threshold",
    "support_threshold",
    "auto_min_groundedness",
    "evidence_hits",
    "evidence_neighbours",
    "evidence_budget_words",
    "evidence_max_sentences",
    "evidence_lexical_weight",
    "evidence_rank_weight",
    "cache_exact",
    "cache_semantic",
)


@dataclass(frozen=True)
class EvalOptions:
    modes: tuple[Mode, ...] = ("hybrid",)
    generate: bool = False
    top_k: int = 5
    consistency_questions: int = 10
    """Questions asked a second time to measure consistency (0 = skip)."""
    judge: bool = False
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0
    ingest_batch: int = 256
    progress: bool = True
    answer_modes: tuple[str, ...] = ()
    """Answer modes to generate with, each scored on its own; empty = the server's RAG_ANSWER_MODE."""

    @property
    def primary(self) -> Mode:
        return next(mode for mode in PRIMARY_ORDER if mode in self.modes)


def parse_answer_modes(value: str | None) -> tuple[str, ...]:
    """``all``, one answer mode, or a comma-separated list; None or empty = the server's default."""
    if not value:
        return ()
    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        return tuple(ANSWER_MODES)
    unknown = [n for n in names if n not in ANSWER_MODES]
    if unknown:
        raise ValueError(f"unknown answer mode {', '.join(unknown)}: use all, {', '.join(ANSWER_MODES)}")
    return tuple(dict.fromkeys(names))


def parse_modes(value: str | Iterable[str]) -> tuple[Mode, ...]:
    """``all``, one mode, or a comma-separated list (``vector,hybrid``), in a stable order."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if names == ["all"]:
        return ALL_MODES
    unknown = [n for n in names if n not in MODES]
    if unknown or not names:
        raise ValueError(f"unknown mode {', '.join(unknown) or '(none)'}: use all, {', '.join(MODES)}")
    return tuple(mode for mode in ALL_MODES if mode in names)


@dataclass
class Corpus:
    """How platform documents and chunks map back to the dataset's document ids."""

    doc_to_dataset: dict[str, list[str]]
    chunk_to_doc: dict[str, str]
    summary: dict[str, Any]

    def ranking(self, chunk_ids: Iterable[str]) -> list[str]:
        return doc_ranking(chunk_ids, self.chunk_to_doc, self.doc_to_dataset)

    def cited_id(self, document_id: str | None, gold: Iterable[str]) -> str:
        """The dataset id a cited chunk counts as: a gold one when its upload stands for several."""
        candidates = self.doc_to_dataset.get(document_id or "", [document_id or ""])
        gold_set = set(gold)
        return next((c for c in candidates if c in gold_set), candidates[0])


def ensure_collection(services: Services, name: str) -> None:
    try:
        get_collection(services.db, name)
    except NotFound:
        create_collection(services.db, name, services.settings)


def ingest_corpus(
    services: Services, dataset: EvalDataset, collection: str, batch_size: int = 256, progress: bool = True
) -> Corpus:
    """Upload every corpus document (same bytes = same document) and index those not indexed yet."""
    started = time.perf_counter()
    ensure_collection(services, collection)
    doc_to_dataset: dict[str, list[str]] = {}
    pending: list[str] = []
    created = 0
    for document in tqdm(dataset.documents, desc="uploading", unit="doc", disable=not progress):
        submission = submit_document(
            services.db,
            services.settings,
            collection,
            document.filename,
            document.upload_text().encode("utf-8"),
            {"source_id": document.id},
            lambda _id: None,
        )
        created += submission.created
        doc_to_dataset.setdefault(submission.document.id, []).append(document.id)
        if submission.document.status in UNFINISHED:
            pending.append(submission.document.id)
    pending = list(dict.fromkeys(pending))
    batched = services.settings.model_copy(update={"ingest_batch_documents": batch_size})
    with tqdm(total=len(pending), desc="indexing", unit="doc", disable=not progress) as bar:
        index_in_batches(services.db, services.retriever, batched, pending, bar.update)
    collection_id = get_collection(services.db, collection).id
    with services.db.session() as session:
        chunk_to_doc = dict(
            session.execute(
                select(Chunk.id, Chunk.document_id)
                .join(Document, Document.id == Chunk.document_id)
                .where(Document.collection_id == collection_id)
            ).all()
        )
        failed = session.execute(
            select(Document.filename, Document.error).where(
                Document.id.in_(list(doc_to_dataset)), Document.status == DocumentStatus.failed
            )
        ).all()
    ours = set(doc_to_dataset)
    summary = {
        "documents": len(dataset.documents),
        "uploads": len(doc_to_dataset),
        "created": created,
        "indexed_now": len(pending),
        "failed": len(failed),
        "failures": [f"{name}: {error}" for name, error in failed[:10]],
        "chunks": sum(1 for doc in chunk_to_doc.values() if doc in ours),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return Corpus(doc_to_dataset=doc_to_dataset, chunk_to_doc=chunk_to_doc, summary=summary)


@dataclass
class RetrievalRun:
    """Document rankings per question for the final ranking and each stage, plus every call's timings."""

    final: dict[str, list[str]] = field(default_factory=dict)
    stages: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    timings: list[dict[str, float]] = field(default_factory=list)


def run_retrieval(
    services: Services,
    dataset: EvalDataset,
    collection: str,
    corpus: Corpus,
    mode: Mode,
    progress: bool = True,
) -> RetrievalRun:
    run = RetrievalRun()
    for question in tqdm(dataset.questions, desc=f"{mode} retrieval", unit="q", disable=not progress):
        result = services.queries.query(
            collection,
            QueryRequest(query=question.text, top_k=RUN_DEPTH, mode=mode, generate=False, use_cache=False),
        )
        run.final[question.id] = corpus.ranking(hit.id for hit in result.hits)
        for stage in STAGES:
            chunk_ids = result.retrieval.get(stage) or []
            # Outside hybrid mode "fused" is a copy of the one search's list.
            if chunk_ids and (stage != "fused" or mode == "hybrid"):
                run.stages.setdefault(stage, {})[question.id] = corpus.ranking(chunk_ids)
        run.timings.append(result.timings_ms)
    return run


def timing_percentiles(timings: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95/p99 of every step the query path timed (embed, searches, fusion, generation, total)."""
    steps = dict.fromkeys(step for timing in timings for step in timing)
    return {step: latency_percentiles([t[step] for t in timings if step in t], prefix="ms") for step in steps}


def score_retrieval(dataset: EvalDataset, run: RetrievalRun) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """``{"metrics", "stages"}`` for one mode, and each question's final-ranking scores."""
    qrels = {q.id: q.qrels for q in dataset.questions}
    means, per_query = score_rankings(qrels, run.final)
    metrics: dict[str, Any] = {
        **means,
        **latency_percentiles([t["total"] for t in run.timings if "total" in t]),
    }
    stages: dict[str, Any] = {}
    for stage, rankings in run.stages.items():
        steps = STAGE_TIMINGS[stage]
        stage_ms = [sum(t[s] for s in steps) for t in run.timings if all(s in t for s in steps)]
        stages[stage] = {**score_rankings(qrels, rankings)[0], **latency_percentiles(stage_ms)}
    return {"metrics": metrics, "stages": stages}, per_query


@dataclass
class AnswerRun:
    records: list[AnswerRecord] = field(default_factory=list)
    scores: list[dict[str, float | None]] = field(default_factory=list)
    consistency_pairs: list[tuple[str, str]] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def _answer_request(question: EvalQuestion, mode: Mode, top_k: int, answer_mode: str | None) -> QueryRequest:
    return QueryRequest(
        query=question.text, top_k=top_k, mode=mode, generate=True, use_cache=False, answer_mode=answer_mode
    )


def _answer(services: Services, collection: str, request: QueryRequest) -> QueryResult:
    """An answer; one the LLM could not write because every backend was down counts as a failed question."""
    result = services.queries.query(collection, request)
    if result.answer is None or result.fallback_reason == "llm_unavailable":
        detail = next((e.get("detail") for e in result.events if e.get("type") == "generation_unavailable"), None)
        raise RagError(f"no answer was generated ({detail or result.backend})")
    return result


def answer_record(question: EvalQuestion, result: QueryResult, corpus: Corpus) -> AnswerRecord:
    gold = tuple(question.qrels)
    return AnswerRecord(
        question_id=question.id,
        answer=result.answer or "",
        answerable=question.answerable,
        abstained=abstained(result.answer, result.abstained),
        references=question.answers,
        gold_doc_ids=gold,
        cited_doc_ids=tuple(corpus.cited_id(c.get("document_id"), gold) for c in result.citations),
        prompt_tokens=int(result.usage.get("prompt_tokens", 0)),
        completion_tokens=int(result.usage.get("completion_tokens", 0)),
        groundedness=result.groundedness,
        fallback_reason=result.fallback_reason,
        answerability=result.answerability,
    )


def run_answers(
    services: Services,
    dataset: EvalDataset,
    collection: str,
    corpus: Corpus,
    options: EvalOptions,
    answer_mode: str | None = None,
) -> AnswerRun:
    run = AnswerRun()
    mode = options.primary
    encode = services.embedder.embed_documents
    label = f"{answer_mode or services.settings.answer_mode} answers"
    for question in tqdm(dataset.questions, desc=label, unit="q", disable=not options.progress):
        try:
            result = _answer(services, collection, _answer_request(question, mode, options.top_k, answer_mode))
        except RagError as exc:
            run.errors.append({"question": question.id, "error": exc.message})
            continue
        record = answer_record(question, result, corpus)
        if options.judge and services.llm is not None and not record.abstained and record.answer:
            sources = [str(c.get("text") or "") for c in result.citations] or [
                str(hit.payload.get("text") or "") for hit in result.hits
            ]
            record = replace(record, faithful=judge_faithfulness(services.llm, record.answer, sources))
        run.records.append(record)
        run.scores.append(score_answer(record, encode))
        run.timings.append(result.timings_ms)
    for record in run.records[: options.consistency_questions]:
        question = next(q for q in dataset.questions if q.id == record.question_id)
        try:
            again = _answer(services, collection, _answer_request(question, mode, options.top_k, answer_mode))
        except RagError as exc:
            run.errors.append({"question": question.id, "error": f"consistency: {exc.message}"})
            continue
        run.consistency_pairs.append((record.answer, again.answer or ""))
    return run


def settings_snapshot(services: Services, options: EvalOptions) -> dict[str, Any]:
    """What produced the figures: a report without it cannot be compared with another."""
    s = services.settings
    snapshot: dict[str, Any] = {name: getattr(s, name, None) for name in SETTINGS_IN_REPORT}
    snapshot["vector_store"] = vector_backend_name(s)
    snapshot["reranker_active"] = services.reranker is not None
    snapshot["top_k"] = options.top_k
    snapshot["run_depth"] = RUN_DEPTH
    if options.generate and services.llm is not None:
        snapshot["llm_model"] = services.llm.model
        snapshot["prompt_version"] = PROMPT_VERSION
    if options.answer_modes:
        snapshot["answer_modes"] = list(options.answer_modes)
    return snapshot


def question_rows(
    dataset: EvalDataset, per_mode: Mapping[str, Mapping[str, Mapping[str, float]]], answers: AnswerRun | None
) -> list[dict[str, Any]]:
    """One row per question: nDCG@10 per mode and, when generated, the answer and its scores."""
    answered = {}
    if answers is not None:
        answered = {r.question_id: (r, s) for r, s in zip(answers.records, answers.scores, strict=True)}
    rows = []
    for question in dataset.questions:
        row: dict[str, Any] = {"id": question.id}
        for mode, scores in per_mode.items():
            if question.id in scores:
                row[f"{mode}_ndcg@10"] = round(scores[question.id]["ndcg@10"], 4)
        if question.id in answered:
            record, answer_scores = answered[question.id]
            row.update(
                answer=record.answer,
                abstained=record.abstained,
                answerable=record.answerable,
                cited=list(record.cited_doc_ids),
                answerability=record.answerability,
                fallback_reason=record.fallback_reason,
                **{k: v for k, v in answer_scores.items() if v is not None},
            )
            if record.faithful is not None:
                row["faithful"] = record.faithful
        rows.append(row)
    return rows


def run_eval(
    services: Services, dataset: EvalDataset, collection: str, options: EvalOptions | None = None
) -> dict[str, Any]:
    """Ingest (or reuse), query, score. Returns the JSON-ready report (see eval_sets/README.md).

    Every query bypasses the answer cache: a cached answer would be measured instead of the pipeline.
    """
    options = options or EvalOptions()
    needs_llm = {m for m in (options.answer_modes or (services.settings.answer_mode,)) if m != "extractive"}
    if options.generate and needs_llm and services.llm is None:
        raise RagError(
            f"Answer mode {', '.join(sorted(needs_llm))} needs an LLM backend and none is configured "
            "(RAG_LLM_BACKEND=none); use --answer-mode extractive."
        )
    corpus = ingest_corpus(services, dataset, collection, options.ingest_batch, options.progress)
    modes: dict[str, dict[str, Any]] = {}
    per_mode: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, Any] = {}
    for mode in options.modes:
        run = run_retrieval(services, dataset, collection, corpus, mode, options.progress)
        modes[mode], per_mode[mode] = score_retrieval(dataset, run)
        if mode == options.primary:
            timings["retrieval"] = timing_percentiles(run.timings)
    primary = modes[options.primary]
    answers = None
    errors: list[dict[str, str]] = []
    answer_modes: dict[str, dict[str, Any]] = {}
    if options.generate:
        retrieval_latency = {
            k.replace("latency_ms", "retrieval_latency_ms"): primary["metrics"].pop(k)
            for k in list(primary["metrics"])
            if k.startswith("latency_ms")
        }
        primary["metrics"].update(retrieval_latency)
        for answer_mode in options.answer_modes or (None,):
            run = run_answers(services, dataset, collection, corpus, options, answer_mode)
            name = answer_mode or services.settings.answer_mode
            answer_modes[name] = {
                "metrics": {
                    **latency_percentiles([t["total"] for t in run.timings if "total" in t]),
                    **summarize_answers(
                        run.records,
                        run.scores,
                        consistency_pairs=run.consistency_pairs,
                        price_prompt_per_1k=options.price_prompt_per_1k,
                        price_completion_per_1k=options.price_completion_per_1k,
                    ),
                },
                "timings_ms": timing_percentiles(run.timings),
                "errors": run.errors,
            }
            errors.extend({**e, "answer_mode": name} for e in run.errors)
            if answers is None:
                answers = run
        first = next(iter(answer_modes.values()))
        primary["metrics"].update(first["metrics"])
        timings["answer"] = first["timings_ms"]
    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "collection": collection,
        "mode": options.primary,
        "generate": options.generate,
        "dataset": dataset.describe(),
        "settings": settings_snapshot(services, options),
        "ingest": corpus.summary,
        "metrics": primary["metrics"],
        "stages": primary["stages"],
        "timings_ms": timings,
        "errors": errors,
        "questions": question_rows(dataset, per_mode, answers),
    }
    if len(modes) > 1:
        report["modes"] = modes
    if answer_modes:
        report["answer_modes"] = answer_modes
    return report
