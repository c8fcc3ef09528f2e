"""The eval harness end to end on the set the project ships: real ingest, real query path, real models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.eval_cmd import eval_command
from core.config import Settings
from evaluation.datasets import load_dataset
from evaluation.in_process import ServicesTarget
from evaluation.metrics import RETRIEVAL_METRICS
from evaluation.runner import ALL_MODES, EvalOptions, run_eval
from runtime.services import Services

pytestmark = pytest.mark.slow

SET = Path(__file__).resolve().parents[2] / "eval_sets" / "platform-docs"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the module: whichever test comes first ingests the set, the others reuse it."""
    return tmp_path_factory.mktemp("eval") / "data"


@pytest.fixture(scope="module")
def retrieval_report(data_dir: Path) -> dict[str, Any]:
    services = Services(Settings(data_dir=data_dir, llm_backend="none", api_key=None, _env_file=None))
    try:
        target = ServicesTarget(services)
        report = run_eval(target, load_dataset(SET), "platform", EvalOptions(modes=ALL_MODES, progress=False))
        report["rerun_ingest"] = run_eval(
            target, load_dataset(SET, limit=2), "platform", EvalOptions(modes=("keyword",), progress=False)
        )["ingest"]
    finally:
        services.close()
    return report


def test_one_run_reports_every_mode_and_stage(retrieval_report: dict[str, Any]) -> None:
    report = retrieval_report
    assert set(report["modes"]) == {"keyword", "vector", "hybrid"}
    assert report["mode"] == "hybrid" and report["metrics"] is report["modes"]["hybrid"]["metrics"]
    assert {"vector", "keyword", "fused"} <= set(report["stages"])
    for body in report["modes"].values():
        for values in [body["metrics"], *body["stages"].values()]:
            assert all(0.0 <= values[m] <= 1.0 for m in RETRIEVAL_METRICS)
        assert body["metrics"]["latency_ms_p50"] > 0
    assert report["modes"]["hybrid"]["metrics"]["ndcg@10"] > 0.5
    # fewer chunks than candidates: the vector search returns every document
    assert report["modes"]["vector"]["metrics"]["recall@100"] == 1.0
    assert report["dataset"]["judged_questions"] == 20


def test_report_records_settings_and_ingest(retrieval_report: dict[str, Any]) -> None:
    report = retrieval_report
    assert report["settings"]["embedding_model"] == "all-MiniLM-L6-v2"
    assert {"chunk_size_tokens", "rrf_k", "candidates", "reranker_model", "keyword_backend"} <= set(report["settings"])
    assert report["ingest"]["documents"] == 18 and report["ingest"]["failed"] == 0
    assert report["ingest"]["chunks"] >= 18
    assert report["errors"] == []
    assert len(report["questions"]) == 24
    json.dumps(report)


def test_a_second_run_reuses_the_collection(retrieval_report: dict[str, Any]) -> None:
    assert retrieval_report["rerun_ingest"]["documents"] == 18
    assert retrieval_report["rerun_ingest"]["created"] == 0
    assert retrieval_report["rerun_ingest"]["indexed_now"] == 0


def test_generation_reports_answer_metrics(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, llm_backend="llama_cpp", llm_max_tokens=16, api_key=None, _env_file=None)
    services = Services(settings)
    # Two sources and short answers keep the 135M model's work (and this test) small.
    options = EvalOptions(
        modes=("hybrid",),
        generate=True,
        top_k=2,
        consistency_questions=1,
        progress=False,
        answer_modes=("generative", "extractive"),
    )
    dataset = load_dataset(SET)
    few = replace(dataset, questions=dataset.questions[18:21])  # two answerable, one unanswerable
    try:
        report = run_eval(ServicesTarget(services), few, "platform", options)
    finally:
        services.close()
    metrics = report["metrics"]
    for key in (
        "answer_f1",
        "answer_rouge_l",
        "answer_similarity",
        "abstention_rate",
        "false_abstention_rate",
        "consistency",
        "prompt_tokens_per_question",
        "completion_tokens_per_question",
        "cost_per_1k_questions",
        "latency_ms_p95",
        "retrieval_latency_ms_p95",
        "citation_rate",
        "loop_rate",
        "groundedness",
        "fallback_rate",
    ):
        assert key in metrics
    assert metrics["consistency"] == 1.0  # temperature 0
    assert metrics["loop_rate"] == 0.0
    assert report["settings"]["llm_model"]
    # The first answer mode is the report's headline; each mode is scored on its own.
    assert list(report["answer_modes"]) == ["generative", "extractive"]
    generative, extractive = (report["answer_modes"][m]["metrics"] for m in ("generative", "extractive"))
    assert metrics["answer_f1"] == generative["answer_f1"] and generative["prompt_tokens_per_question"] > 0
    assert extractive["prompt_tokens_per_question"] == 0 and extractive["groundedness"] in (1.0, None)
    if "generate" not in report["timings_ms"]["answer"]:  # every question abstained before the LLM
        assert generative["false_abstention_rate"] == 1.0


def test_cli_gates_on_a_baseline(data_dir: Path, tmp_path: Path) -> None:
    """The command's exit status is what a nightly job reads: 0 when equal, 1 on a regression."""
    env = {"RAG_DATA_DIR": str(data_dir), "RAG_LLM_BACKEND": "none"}
    common = ["--dataset", str(SET), "--collection", "platform", "--mode", "keyword", "--limit", "6"]
    runner = CliRunner()
    first = runner.invoke(_app(), [*common, "--out", str(tmp_path / "base.json")], env=env)
    assert first.exit_code == 0, first.output
    assert "keyword" in first.output and "ndcg@10" in first.output

    baseline = json.loads((tmp_path / "base.json").read_text())
    baseline["metrics"]["ndcg@10"] = 1.05
    (tmp_path / "better.json").write_text(json.dumps(baseline))
    gated = runner.invoke(_app(), [*common, "--baseline", str(tmp_path / "better.json")], env=env)
    assert gated.exit_code == 1, gated.output
    assert "REGRESSION" in gated.output and "metrics.ndcg@10" in gated.output


def _app() -> Any:
    import typer

    app = typer.Typer()
    app.command()(eval_command)
    return app
