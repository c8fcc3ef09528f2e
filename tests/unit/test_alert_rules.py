"""ops/alerts.yml is a well-formed Prometheus rules file over metrics core/metrics.py really exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, Metric

from core.db import Database
from core.metrics import ModelInfoCollector, QueueDepthCollector

promql = pytest.importorskip("promql_parser", reason="promql-parser (a dev dependency) parses the rule expressions")

RULES = Path(__file__).resolve().parents[2] / "ops" / "alerts.yml"
# Metrics Prometheus itself provides for every target.
PROMETHEUS_BUILTINS = {"up"}


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert groups
    return [rule for group in groups for rule in group["rules"]]


# Names a family's samples take, also for a labelled metric that has no sample yet.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def sample_names(family: Metric) -> list[str]:
    return [family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name a scrape can show: registered metrics plus the scrape-time collectors."""
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('db') / 'rag.db'}")
    db.create_schema()
    collectors = [REGISTRY, QueueDepthCollector(db), ModelInfoCollector({"llm": "m"})]
    try:
        return {name for c in collectors for family in c.collect() for name in sample_names(family)}
    finally:
        db.dispose()


def selectors(node: Any) -> list[str]:
    """Metric names selected anywhere in a parsed PromQL expression."""
    found = [node.name] if type(node).__name__ == "VectorSelector" else []
    for attribute in ("lhs", "rhs", "expr", "args", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        for item in child if isinstance(child, list) else [child]:
            if item is not None and not isinstance(item, (int, float, str)):
                found += selectors(item)
    return found


def test_every_alert_is_complete(rules: list[dict[str, Any]]) -> None:
    alerts = [rule for rule in rules if "alert" in rule]
    assert len(alerts) >= 7
    for rule in alerts:
        assert re.fullmatch(r"Rag[A-Za-z0-9]+", rule["alert"]), rule["alert"]
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_expressions_parse_and_use_exported_metrics(rules: list[dict[str, Any]], exported: set[str]) -> None:
    recorded = {rule["record"] for rule in rules if "record" in rule}
    for rule in rules:
        names = selectors(promql.parse(rule["expr"]))
        assert names, rule
        for name in names:
            assert name in exported | recorded | PROMETHEUS_BUILTINS, (
                f"{name} in {rule.get('alert', rule.get('record'))}"
            )


def test_the_documented_alerts_exist(rules: list[dict[str, Any]]) -> None:
    names = {rule["alert"] for rule in rules if "alert" in rule}
    assert {
        "RagLatencyP95High",
        "RagErrorRateHigh",
        "RagLlmCostPerHourHigh",
        "RagRetrievalReturnsNothing",
        "RagModelChanged",
        "RagIngestFailures",
        "RagIngestBacklog",
    } <= names
