"""What the in-process benchmarks share: machine facts, percentiles, tables, data paths and the cache.

The machine is shared with other people's test runs, so every report carries the load average at
its start and its end, and the exact command that reproduces it. Nothing here asserts a time: the
figures are printed for a person to judge against the targets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

# Benchmarks never reach a model hub; set before anything imports transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
"""Embeddings and exported models that are expensive to recompute (gitignored)."""
RESULTS = REPO / "bench" / "results"
"""Each benchmark's latest figures, one JSON file per benchmark (committed: bench/README.md cites them)."""
PERCENTILES = (50, 95, 99)

_tables: list[dict[str, Any]] = []
"""Every table printed in this process, in order, with the heading above it: what ``Report.finish`` saves."""
_heading: list[str] = [""]


def shared_data_dir() -> Path:
    """``RAG_SHARED_DATA`` or ``../shared/data`` next to the repo, like the tests."""
    path = Path(os.environ.get("RAG_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "scifact" / "corpus.jsonl").is_file():
        raise SystemExit(f"{path}/scifact not found: set RAG_SHARED_DATA to the folder holding scifact/")
    return path


def scifact_dir() -> Path:
    return shared_data_dir() / "scifact"


def cache_dir(*parts: str) -> Path:
    path = CACHE.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def rss_mb() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def git_revision() -> str:
    """The commit measured, marked when the tree differs from it (the tree changes under a shared machine)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


@dataclass
class Report:
    """Machine facts taken at the start; ``finish`` prints them with the end load and the command, and writes
    ``bench/results/<name>.json``: the facts, the command, every printed table and the bench's own ``figures``."""

    module: str
    extra_facts: list[tuple[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    """Headline figures a bench wants kept in machine-readable form beside its tables."""
    started_load: str = field(default_factory=load_average)
    started_at: float = field(default_factory=time.time)

    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", self.module, *sys.argv[1:]])

    def start(self, title: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"{title}\n{stamp}, load average 1/5/15 min at start: {self.started_load}", flush=True)

    def machine(self) -> list[list[Any]]:
        return [
            ["cores (os.cpu_count)", os.cpu_count()],
            ["cores usable (affinity)", len(os.sched_getaffinity(0))],
            ["cpu", cpu_model()],
            ["memory", f"{memory_gb():.1f} GB"],
            ["python", platform.python_version()],
            ["revision", git_revision()],
            *[list(fact) for fact in self.extra_facts],
            ["load average 1/5/15 min at start", self.started_load],
            ["load average 1/5/15 min at end", load_average()],
            ["wall time", f"{time.time() - self.started_at:.0f} s"],
        ]

    def finish(self) -> Path:
        machine = self.machine()
        print("\nMachine (2-core shared machine: other people's tests run at the same time)")
        tables = list(_tables)
        print_table(["fact", "value"], machine)
        print(f"\nReproduce (from the repo root):\n  {self.command()}", flush=True)
        out = Path(os.environ.get("RAG_BENCH_RESULTS", RESULTS)) / f"{self.module.removeprefix('bench.')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "bench": self.module,
            "command": self.command(),
            "measured_at": datetime.fromtimestamp(self.started_at, UTC).isoformat(timespec="seconds"),
            "machine": {str(k): jsonable(v) for k, v in machine},
            "figures": jsonable(self.figures),
            "tables": tables,
        }
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}", flush=True)
        return out


def jsonable(value: Any) -> Any:
    """Numbers stay numbers (numpy scalars included; NaN becomes null), containers recurse, the rest is text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return str(value)


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """n, p50/p95/p99 (linear interpolation), mean and max of latencies in milliseconds."""
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    points = np.percentile(np.asarray(values, dtype=float), PERCENTILES)
    return {
        "n": len(values),
        **{f"p{p}": float(v) for p, v in zip(PERCENTILES, points, strict=True)},
        "mean": float(np.mean(values)),
        "max": float(np.max(values)),
    }


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed:`` then ``elapsed[0]`` holds the seconds the block took."""
    elapsed = [0.0]
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - start


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def heading(text: str) -> None:
    """Prints a table's title; the next ``print_table`` is saved under it."""
    print(f"\n{text}", flush=True)
    _heading[0] = text


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    _tables.append({"title": _heading[0], "headers": list(headers), "rows": jsonable([list(r) for r in rows])})
    _heading[0] = ""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)), flush=True)


def tuning_cells(train: dict[str, float], test: dict[str, float]) -> list[str]:
    """The metric columns both tuning benches print: nDCG@10 on train (what picks) and test (what reports)."""
    return [f"{train['ndcg@10']:.4f}"] + [f"{test[k]:.4f}" for k in ("ndcg@10", "recall@10", "recall@100", "mrr@10")]


def verdict(value: float, target: float) -> str:
    """``pass`` when ``value`` is at most ``target`` (latencies); callers flip the sense for throughputs."""
    return "pass" if value <= target else "FAIL"


def progress(message: str) -> None:
    """Progress goes to stderr so the report on stdout stays a clean table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def scifact_corpus() -> list[dict[str, str]]:
    """SciFact abstracts in file order: ``_id``, ``title``, ``text``."""
    import json

    with (scifact_dir() / "corpus.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def abstract_text(row: dict[str, str]) -> str:
    """Title and abstract as the measured baselines embedded them (``../shared/tools/beir_baseline.py``)."""
    return f"{row.get('title', '')} {row['text']}".strip()


def cached_vectors(label: str, texts: Sequence[str], encode: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """``encode(texts)`` once per label and text list; later runs load the ``.npy`` from the cache."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache_dir("vectors") / f"{label}-{len(texts)}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    progress(f"embedding {len(texts):,} texts for {label} (cached afterwards in {path.relative_to(REPO)})")
    vectors = np.asarray(encode(texts), dtype=np.float32)
    np.save(path, vectors)
    return vectors
