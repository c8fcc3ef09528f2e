"""Answer modes side by side on a RAG-layout set (default ClapNQ-dev), and the abstention curve.

Two passes through the real platform (ingest pipeline, query path, answer modes), in one process:

1. The calibration pass: extractive answers with abstention off (``RAG_ABSTAIN_THRESHOLD=-1``), so every
   question gets its answerability score and its unconditional token F1. From them, for each threshold:
   abstention on unanswerable questions, false abstention on answerable ones, and token F1 on answerable
   questions with abstentions counted as 0 -- the curve ``RAG_ABSTAIN_THRESHOLD`` is chosen on.
2. The overhead pass: per question, a retrieval-only query and an extractive answer at the same ``top_k``,
   alternated, so the time the answer adds over retrieval is read side by side (target: <= 50 ms at p50).
3. The comparison pass: every ``--answer-modes`` mode at the configured threshold, with the eval report's
   metrics (token F1, ROUGE-L, citation rate and precision, abstention, false abstention, loop rate,
   groundedness, fallback rate, answer latency p50/p95) and the retrieval-only latency for reference.
   Generation costs seconds a question on 2 cores: ``--compare-limit`` keeps a balanced subset here.

Writes bench/results/answer_modes.json and prints the tables and the command that reproduces them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Report, heading, print_table, progress, shared_data_dir
from core.config import Settings
from evaluation.datasets import EvalDataset, load_dataset
from evaluation.in_process import ServicesTarget
from evaluation.report import format_answer_modes
from evaluation.runner import EvalOptions, parse_answer_modes, run_eval
from generation.query_types import QueryRequest
from runtime.services import Services

CURVE_COLUMNS = ("abstention_rate", "false_abstention_rate", "answer_f1")
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.40, 0.76, 0.02))
TARGETS = "targets: F1 >= 0.55 (abstentions 0), abstention >= 0.55, false abstention <= 0.12"


def curve(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per threshold: abstention, false abstention and F1 (abstentions 0) from unconditional answers."""
    answerable = [r for r in rows if r.get("answerable")]
    unanswerable = [r for r in rows if "answerable" in r and not r["answerable"]]
    points = []
    for threshold in THRESHOLDS:
        points.append(
            {
                "threshold": threshold,
                "abstention_rate": float(np.mean([r["answerability"] < threshold for r in unanswerable])),
                "false_abstention_rate": float(np.mean([r["answerability"] < threshold for r in answerable])),
                "answer_f1": float(
                    np.mean([0.0 if r["answerability"] < threshold else r.get("f1", 0.0) for r in answerable])
                ),
            }
        )
    return points


def extractive_overhead(services: Services, dataset: EvalDataset) -> dict[str, dict[str, float]]:
    """p50/p95 of retrieval-only and extractive queries (top_k 5), and of their per-question difference."""
    retrieval, answered, added = [], [], []
    for question in dataset.questions:
        asked = {"query": question.text, "top_k": 5, "use_cache": False}
        plain = services.queries.query("answers", QueryRequest(**asked, generate=False)).timings_ms["total"]
        full = services.queries.query("answers", QueryRequest(**asked, answer_mode="extractive")).timings_ms["total"]
        retrieval.append(plain)
        answered.append(full)
        added.append(full - plain)
    return {
        name: {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}
        for name, values in (("retrieval only", retrieval), ("extractive answer", answered), ("added", added))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None, help="RAG-layout set (default: clapnq-dev)")
    parser.add_argument("--answer-modes", default="all", help="extractive, generative, auto, all, or a list")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions (both passes)")
    parser.add_argument(
        "--compare-limit", type=int, default=None, help="only the first N questions in the comparison pass"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse an ingested data dir (default: temp)")
    args = parser.parse_args()
    dataset_path = args.dataset or shared_data_dir() / "clapnq-dev"
    dataset = load_dataset(dataset_path, limit=args.limit)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-answers-"))
    report = Report("bench.answer_modes")
    report.start(f"Answer modes on {dataset_path.name} ({len(dataset.questions)} questions), data in {data_dir}")

    settings = Settings(data_dir=data_dir, _env_file=None)
    progress("calibration pass: extractive answers, abstention off")
    calibration_settings = settings.model_copy(update={"abstain_threshold": -1.0})
    services = Services(calibration_settings)
    try:
        options = EvalOptions(generate=True, answer_modes=("extractive",), consistency_questions=0, progress=True)
        calibration = run_eval(ServicesTarget(services), dataset, "answers", options)
    finally:
        services.close()
    points = curve(calibration["questions"])
    heading(f"Abstention curve (extractive, answerability = best evidence cosine); {TARGETS}")
    print("configured RAG_ABSTAIN_THRESHOLD:", settings.abstain_threshold)
    print_table(
        ["threshold", "abstention", "false abstention", "F1 (abstain = 0)"],
        [[p["threshold"], *(f"{p[k]:.3f}" for k in CURVE_COLUMNS)] for p in points],
    )

    progress("overhead pass: retrieval only vs extractive answer, alternated")
    services = Services(settings)
    try:
        overhead = extractive_overhead(services, dataset)
    finally:
        services.close()
    heading("Extractive answer over retrieval alone (same top_k, alternated per question; target <= 50 ms at p50)")
    print_table(
        ["query", "p50 ms", "p95 ms"],
        [[name, f"{v['p50']:.1f}", f"{v['p95']:.1f}"] for name, v in overhead.items()],
    )

    progress(f"comparison pass: {args.answer_modes} at the configured threshold")
    services = Services(settings)
    try:
        options = EvalOptions(
            generate=True, answer_modes=parse_answer_modes(args.answer_modes), consistency_questions=0, progress=True
        )
        compared = load_dataset(dataset_path, limit=args.compare_limit or args.limit)
        comparison = run_eval(ServicesTarget(services), compared, "answers", options)
    finally:
        services.close()
    print("\nAnswer modes side by side (latency_ms: whole query, retrieval included)")
    print(format_answer_modes(comparison["answer_modes"]))
    retrieval = {k: v for k, v in comparison["metrics"].items() if k.startswith("retrieval_latency")}
    print(f"retrieval only: {retrieval}")

    report.figures = {
        "dataset": comparison["dataset"],
        "settings": comparison["settings"],
        "abstention_curve": points,
        "retrieval_latency": retrieval,
        "extractive_overhead_ms": overhead,
        "answer_modes": {name: body["metrics"] for name, body in comparison["answer_modes"].items()},
        "errors": comparison["errors"],
    }
    report.finish()


if __name__ == "__main__":
    main()
