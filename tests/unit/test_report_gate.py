"""The baseline gate: equal reports pass, drops beyond the tolerance fail, latency and cost grow worse."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from evaluation.report import compare, flatten_metrics, format_comparison, format_report


def report() -> dict[str, Any]:
    ranking = {"ndcg@10": 0.70, "recall@10": 0.80, "mrr@10": 0.65, "latency_ms_p95": 40.0}
    return {
        "collection": "scifact",
        "mode": "hybrid",
        "dataset": {"name": "scifact", "layout": "beir", "split": "test", "questions": 300},
        "metrics": {**ranking, "false_abstention_rate": 0.10, "cost_per_1k_questions": 2.0},
        "stages": {"vector": {"ndcg@10": 0.64, "latency_ms_p95": 12.0}, "fused": dict(ranking)},
        "modes": {
            "keyword": {"metrics": {"ndcg@10": 0.68}, "stages": {"keyword": {"ndcg@10": 0.68}}},
            "hybrid": {"metrics": dict(ranking), "stages": {}},
        },
    }


def test_equal_reports_pass() -> None:
    result = compare(report(), report())
    assert result.passed
    assert result.deltas and all(d.change == 0 for d in result.deltas)
    assert "PASS" in format_comparison(result)


@pytest.mark.parametrize(
    ("key", "drop", "regressed"),
    [("ndcg@10", 0.02, True), ("ndcg@10", 0.005, False), ("recall@10", 0.0101, True)],
)
def test_score_drops_respect_the_tolerance(key: str, drop: float, regressed: bool) -> None:
    current = report()
    current["metrics"][key] -= drop
    result = compare(current, report(), tolerance=0.01)
    assert result.passed is not regressed
    assert [d.key for d in result.regressions] == ([f"metrics.{key}"] if regressed else [])


def test_improvements_never_fail() -> None:
    current = report()
    current["metrics"]["ndcg@10"] += 0.2
    current["metrics"]["latency_ms_p95"] = 1.0
    current["metrics"]["cost_per_1k_questions"] = 0.5
    assert compare(current, report()).passed


def test_nested_stage_and_mode_metrics_are_gated() -> None:
    current = report()
    current["modes"]["keyword"]["stages"]["keyword"]["ndcg@10"] = 0.5
    result = compare(current, report())
    assert [d.key for d in result.regressions] == ["modes.keyword.stages.keyword.ndcg@10"]


def test_latency_and_cost_are_worse_when_higher() -> None:
    current = report()
    current["metrics"]["latency_ms_p95"] = 60.0  # +50 %, +20 ms
    current["metrics"]["cost_per_1k_questions"] = 2.4  # +20 %
    current["metrics"]["false_abstention_rate"] = 0.15  # +0.05 absolute
    result = compare(current, report(), tolerance=0.01, relative_tolerance=0.25)
    assert {d.key for d in result.regressions} == {"metrics.latency_ms_p95", "metrics.false_abstention_rate"}


def test_small_absolute_latency_growth_is_noise() -> None:
    current = report()
    current["stages"]["vector"]["latency_ms_p95"] = 16.0  # +33 % but only 4 ms
    assert compare(current, report()).passed


def test_a_metric_missing_from_the_new_report_fails() -> None:
    current = report()
    del current["modes"]["keyword"]
    result = compare(current, report())
    assert not result.passed
    assert "missing" in format_comparison(result)


def test_different_datasets_are_flagged() -> None:
    current = copy.deepcopy(report())
    current["dataset"]["questions"] = 20
    result = compare(current, report())
    assert result.mismatches == ["dataset questions: 300 -> 20"]


def test_flatten_and_table() -> None:
    flat = flatten_metrics(report())
    assert flat["stages.fused.ndcg@10"] == 0.70
    assert flat["modes.hybrid.metrics.recall@10"] == 0.80
    table = format_report(report())
    assert "keyword" in table and "0.6800" in table and "false_abstention_rate" in table
