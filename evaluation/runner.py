"""Run an evaluation set through the real platform: ingest pipeline, query path, LLM backend.

One run ingests the corpus once (reusing whatever the collection already holds: uploads dedupe by
content hash) and then asks every question in each requested mode. Retrieval is scored from the id lists
the query path returns for every stage, asked deep enough (``RUN_DEPTH``) for recall@100; answers come
from a second, normal query (``top_k`` hits, generation on) in the primary mode only, because generation
costs seconds per question and does not depend on how the other modes rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from core.errors import RagError
from core.types import MODES
from evaluation.answer_metrics import AnswerRecord, abstained, score_answer, summarize_answers
from evaluation.corpus import Corpus
from evaluation.datasets import EvalDataset, EvalQuestion
from evaluation.metrics import RUN_DEPTH, latency_percentiles, score_rankings
from evaluation.target import EvalTarget
from generation.modes import ANSWER_MODES
from generation.query_types import STAGES, Mode, QueryRequest, QueryResult

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
class RetrievalRun:
    """Document rankings per question for the final ranking and each stage, plus every call's timings."""

    final: dict[str, list[str]] = field(default_factory=dict)
    stages: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    timings: list[dict[str, float]] = field(default_factory=list)


def run_retrieval(
    target: EvalTarget,
    dataset: EvalDataset,
    collection: str,
    corpus: Corpus,
    mode: Mode,
    progress: bool = True,
) -> RetrievalRun:
    run = RetrievalRun()
    for question in tqdm(dataset.questions, desc=f"{mode} retrieval", unit="q", disable=not progress):
        result = target.query(
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


def _answer(target: EvalTarget, collection: str, request: QueryRequest) -> QueryResult:
    """An answer; one the LLM could not write because every backend was down counts as a failed question."""
    result = target.query(collection, request)
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
    target: EvalTarget,
    dataset: EvalDataset,
    collection: str,
    corpus: Corpus,
    options: EvalOptions,
    answer_mode: str | None = None,
) -> AnswerRun:
    run = AnswerRun()
    mode = options.primary
    encode = target.encoder()
    label = f"{answer_mode or target.default_answer_mode()} answers"
    for question in tqdm(dataset.questions, desc=label, unit="q", disable=not options.progress):
        try:
            result = _answer(target, collection, _answer_request(question, mode, options.top_k, answer_mode))
        except RagError as exc:
            run.errors.append({"question": question.id, "error": exc.message})
            continue
        record = answer_record(question, result, corpus)
        if options.judge and not record.abstained and record.answer:
            sources = [str(c.get("text") or "") for c in result.citations] or [
                str(hit.payload.get("text") or "") for hit in result.hits
            ]
            record = replace(record, faithful=target.judge(record.answer, sources))
        run.records.append(record)
        run.scores.append(score_answer(record, encode))
        run.timings.append(result.timings_ms)
    for record in run.records[: options.consistency_questions]:
        question = next(q for q in dataset.questions if q.id == record.question_id)
        try:
            again = _answer(target, collection, _answer_request(question, mode, options.top_k, answer_mode))
        except RagError as exc:
            run.errors.append({"question": question.id, "error": f"consistency: {exc.message}"})
            continue
        run.consistency_pairs.append((record.answer, again.answer or ""))
    return run


def settings_snapshot(target: EvalTarget, options: EvalOptions) -> dict[str, Any]:
    """What produced the figures: a report without it cannot be compared with another."""
    snapshot = target.settings_snapshot(options.generate)
    snapshot["top_k"] = options.top_k
    snapshot["run_depth"] = RUN_DEPTH
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
    target: EvalTarget, dataset: EvalDataset, collection: str, options: EvalOptions | None = None
) -> dict[str, Any]:
    """Ingest (or reuse), query, score. Returns the JSON-ready report (see eval_sets/README.md). ``target`` is
    the platform in this process (``evaluation.in_process``) or a server over HTTP (``evaluation.over_http``).

    Every query bypasses the answer cache: a cached answer would be measured instead of the pipeline.
    """
    options = options or EvalOptions()
    needs_llm = {m for m in (options.answer_modes or (target.default_answer_mode(),)) if m != "extractive"}
    if options.generate and needs_llm and not target.has_llm():
        raise RagError(
            f"Answer mode {', '.join(sorted(needs_llm))} needs an LLM backend and none is configured "
            "(RAG_LLM_BACKEND=none); use --answer-mode extractive."
        )
    corpus = target.ingest(dataset, collection, options.ingest_batch, options.progress)
    modes: dict[str, dict[str, Any]] = {}
    per_mode: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, Any] = {}
    for mode in options.modes:
        run = run_retrieval(target, dataset, collection, corpus, mode, options.progress)
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
            run = run_answers(target, dataset, collection, corpus, options, answer_mode)
            name = answer_mode or target.default_answer_mode()
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
        "settings": settings_snapshot(target, options),
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
