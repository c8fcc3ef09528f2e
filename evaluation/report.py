"""Reading a report: the printed table, and the comparison with a baseline report that gates a change.

Gate rules: quality scores (fractions in [0, 1]) regress when they drop by more than ``tolerance``
(absolute); latency, tokens and cost regress when they grow by more than ``relative_tolerance`` of the
baseline's value (latency only once the growth also exceeds ``LATENCY_FLOOR_MS``, so sub-millisecond
stages do not flap). A metric the baseline has and the new report lacks is a regression too: a gate that
silently skips what it cannot compare passes changes it never checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from evaluation.metrics import RETRIEVAL_METRICS

LATENCY_FLOOR_MS = 5.0
LATENCY_COLUMNS = ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99")
_COST_PARTS = ("latency", "cost", "tokens")
_IDENTITY = ("name", "layout", "split", "questions")


@dataclass(frozen=True)
class Delta:
    key: str
    baseline: float
    current: float | None
    regression: bool

    @property
    def change(self) -> float | None:
        return None if self.current is None else self.current - self.baseline


@dataclass
class Comparison:
    deltas: list[Delta] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    """Differences in what was measured (dataset, split, question count): deltas may not mean much."""

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.regression]

    @property
    def passed(self) -> bool:
        return not self.regressions


def lower_is_better(key: str) -> bool:
    name = key.rsplit(".", 1)[-1]
    return name in ("false_abstention_rate", "loop_rate", "fallback_rate") or any(part in name for part in _COST_PARTS)


def is_unbounded(key: str) -> bool:
    """Latency, tokens and cost have no natural scale, so they are compared relative to the baseline."""
    name = key.rsplit(".", 1)[-1]
    return any(part in name for part in _COST_PARTS)


def flatten_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Every numeric metric of a report under a dotted key, e.g. ``modes.vector.stages.vector.ndcg@10``."""

    def walk(prefix: str, node: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
        for name, value in node.items():
            key = f"{prefix}.{name}"
            if isinstance(value, Mapping):
                yield from walk(key, value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                yield key, float(value)

    flat: dict[str, float] = {}
    for section in ("metrics", "stages"):
        flat.update(walk(section, report.get(section) or {}))
    for mode, body in (report.get("modes") or {}).items():
        for section in ("metrics", "stages"):
            flat.update(walk(f"modes.{mode}.{section}", body.get(section) or {}))
    for answer_mode, body in (report.get("answer_modes") or {}).items():
        flat.update(walk(f"answer_modes.{answer_mode}.metrics", body.get("metrics") or {}))
    return flat


def is_regression(key: str, baseline: float, current: float, tolerance: float, relative: float) -> bool:
    if not lower_is_better(key):
        return current < baseline - tolerance
    if not is_unbounded(key):
        return current > baseline + tolerance
    growth = current - baseline
    if "latency" in key and growth <= LATENCY_FLOOR_MS:
        return False
    return growth > relative * abs(baseline)


def compare(
    report: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tolerance: float = 0.01,
    relative_tolerance: float = 0.25,
) -> Comparison:
    current = flatten_metrics(report)
    comparison = Comparison()
    for key, old in flatten_metrics(baseline).items():
        new = current.get(key)
        regression = new is None or is_regression(key, old, new, tolerance, relative_tolerance)
        comparison.deltas.append(Delta(key, old, new, regression))
    ours, theirs = report.get("dataset") or {}, baseline.get("dataset") or {}
    for name in _IDENTITY:
        if ours.get(name) != theirs.get(name):
            comparison.mismatches.append(f"dataset {name}: {theirs.get(name)!r} -> {ours.get(name)!r}")
    return comparison


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if "latency" in key or "tokens" in key:
        return f"{value:.1f}"
    return f"{value:.4f}"


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _ranking_rows(label: str, body: Mapping[str, Any], columns: tuple[str, ...]) -> list[list[str]]:
    rows = [[label, *(_cell(c, body.get("metrics", {}).get(c)) for c in columns)]]
    for stage, values in (body.get("stages") or {}).items():
        rows.append([f"  {stage}", *(_cell(c, values.get(c)) for c in columns)])
    return rows


def format_report(report: Mapping[str, Any]) -> str:
    """Retrieval metrics per mode and stage in one table, then answer metrics and the ingest summary."""
    columns = (*RETRIEVAL_METRICS, *LATENCY_COLUMNS)
    headers = ["ranking", *(c.replace("latency_ms_", "ms ") for c in columns)]
    modes = report.get("modes") or {report.get("mode", "final"): report}
    rows = [row for mode, body in modes.items() for row in _ranking_rows(mode, body, columns)]
    dataset = report.get("dataset") or {}
    parts = [
        f"dataset {dataset.get('name')} ({dataset.get('layout')}"
        + (f", split {dataset['split']}" if dataset.get("split") else "")
        + f", {dataset.get('questions')} questions) -> collection {report.get('collection')!r}",
        render_table(headers, rows),
    ]
    shown = set(columns)
    answer_modes = report.get("answer_modes") or {}
    if len(answer_modes) > 1:
        parts.append(format_answer_modes(answer_modes))
    else:
        extra = {k: v for k, v in (report.get("metrics") or {}).items() if k not in shown}
        if extra:
            parts.append(render_table(["answers", "value"], [[k, _cell(k, v)] for k, v in extra.items()]))
    ingest = report.get("ingest") or {}
    if ingest:
        parts.append(
            f"ingest: {ingest.get('documents')} documents ({ingest.get('created')} new, "
            f"{ingest.get('failed')} failed), {ingest.get('chunks')} chunks, {ingest.get('seconds')} s"
        )
    return "\n\n".join(parts)


def format_answer_modes(answer_modes: Mapping[str, Mapping[str, Any]]) -> str:
    """Answer metrics of every answer mode side by side, one row per metric."""
    names = list(answer_modes)
    keys = list(dict.fromkeys(k for body in answer_modes.values() for k in (body.get("metrics") or {})))
    rows = [[k, *(_cell(k, (answer_modes[m].get("metrics") or {}).get(k)) for m in names)] for k in keys]
    return render_table(["answers", *names], rows)


def format_comparison(comparison: Comparison, changed_only: bool = True) -> str:
    """Deltas against the baseline; regressions are marked. Unchanged metrics are hidden by default."""
    rows = [
        [
            d.key,
            _cell(d.key, d.baseline),
            _cell(d.key, d.current),
            "missing" if d.change is None else f"{d.change:+.4f}",
            "REGRESSION" if d.regression else "",
        ]
        for d in comparison.deltas
        if d.regression or not changed_only or d.change != 0
    ]
    lines = [f"warning: {m}" for m in comparison.mismatches]
    lines.append(render_table(["metric", "baseline", "current", "delta", ""], rows) if rows else "no metric changed")
    verdict = (
        "PASS: no metric regressed beyond the tolerance"
        if comparison.passed
        else f"FAIL: {len(comparison.regressions)} metric(s) regressed beyond the tolerance"
    )
    lines.append(verdict)
    return "\n".join(lines)
