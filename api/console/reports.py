"""Evaluation reports (the JSON files ``ragctl eval --out`` writes) read from ``RAG_EVAL_REPORTS_DIR``.

The console only reads them: a report's shape is the eval's contract (eval_sets/README.md), and what is
missing from an older report is shown as missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from api.console.svg import bar_chart
from core.errors import BadInput, NotFound

REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.json")
NDCG = "ndcg@10"
LATENCY_PREFIXES = ("latency_ms_", "retrieval_latency_ms_")


@dataclass
class ReportView:
    name: str
    report: dict[str, Any]
    ranking_columns: list[str] = field(default_factory=list)
    latency_columns: list[str] = field(default_factory=list)
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answer_rows: list[tuple[str, list[Any]]] = field(default_factory=list)
    answer_modes: list[str] = field(default_factory=list)
    charts: list[Markup] = field(default_factory=list)


def list_reports(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and REPORT_NAME.fullmatch(p.name)]
    return [p.name for p in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)]


def load_report(folder: Path, name: str) -> dict[str, Any]:
    if not REPORT_NAME.fullmatch(name) or not (folder / name).is_file():
        raise NotFound(f"No evaluation report named {name!r} in {folder}.")
    try:
        report = json.loads((folder / name).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{name} is not a JSON evaluation report ({type(exc).__name__}).") from None
    if not isinstance(report, dict):
        raise BadInput(f"{name} is not a JSON evaluation report (not an object).")
    return report


def is_latency(key: str) -> bool:
    return key.startswith(LATENCY_PREFIXES)


def ranking_rows(report: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """One row per retrieval mode, then the primary mode's stages indented under it."""
    modes = report.get("modes") or {report.get("mode", "final"): report}
    rows: list[tuple[str, dict[str, Any]]] = []
    for mode, body in modes.items():
        rows.append((str(mode), dict(body.get("metrics") or {})))
        for stage, values in (body.get("stages") or {}).items():
            rows.append((f"{mode} / {stage}", dict(values or {})))
    return rows


def numeric(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def report_view(name: str, report: dict[str, Any]) -> ReportView:
    view = ReportView(name=name, report=report, rows=ranking_rows(report))
    keys = list(dict.fromkeys(k for _, metrics in view.rows for k in metrics if numeric(metrics[k]) is not None))
    view.latency_columns = [k for k in keys if is_latency(k)]
    view.ranking_columns = [k for k in keys if not is_latency(k)][:8]
    answer_modes = report.get("answer_modes") or {}
    view.answer_modes = list(answer_modes)
    answer_keys = list(dict.fromkeys(k for body in answer_modes.values() for k in (body.get("metrics") or {})))
    view.answer_rows = [
        (k, [(answer_modes[m].get("metrics") or {}).get(k) for m in view.answer_modes]) for k in answer_keys
    ]
    modes = [(label, metrics) for label, metrics in view.rows if "/" not in label]
    scored = [(label, numeric(metrics.get(NDCG))) for label, metrics in modes]
    if any(v is not None for _, v in scored):
        view.charts.append(
            bar_chart("nDCG@10 per retrieval mode", [label for label, _ in scored], [v or 0.0 for _, v in scored])
        )
    for percentile in ("p50", "p95"):
        latency = [
            (label, next((numeric(v) for k, v in metrics.items() if is_latency(k) and k.endswith(percentile)), None))
            for label, metrics in modes
        ]
        if any(v is not None for _, v in latency):
            view.charts.append(
                bar_chart(
                    f"Retrieval latency {percentile} per mode (ms)",
                    [label for label, _ in latency],
                    [v or 0.0 for _, v in latency],
                    fmt="{:.1f}",
                )
            )
    return view
