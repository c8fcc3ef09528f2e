"""Prometheus metrics: the objects every layer records into, and the collectors computed at scrape time.

Label values must come from small fixed sets (route templates, stage names, backend names, model names
from settings) so a scrape never grows with traffic: no raw paths, ids, collection names or user text.

Several uvicorn workers are several processes. With ``PROMETHEUS_MULTIPROC_DIR`` set (the compose file
sets it for the API) prometheus_client keeps every sample in memory-mapped files there and ``/metrics``
sums all processes; the directory must be emptied before the processes start. Celery worker processes
are scraped on their own port (``serve_metrics``), so the API never double counts ingest work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from core.db import Database
from core.models import UNFINISHED, Document

log = logging.getLogger(__name__)

# Requests span milliseconds (health, metrics) to minutes (a long generation), hence the wide range.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REQUEST_LATENCY = Histogram(
    "rag_http_request_duration_seconds",
    "HTTP request duration until the last body byte (streams included), by route template.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "rag_stage_duration_seconds",
    "Duration of one pipeline stage (query: embed, vector, keyword, fuse, rerank, generate; "
    "ingest: parse, chunk, embed, index).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
INPUT_TOKENS = Counter("rag_llm_input_tokens", "Prompt tokens sent to the LLM.", ["backend", "model"])
OUTPUT_TOKENS = Counter("rag_llm_output_tokens", "Completion tokens the LLM produced.", ["backend", "model"])
QUERIES = Counter("rag_queries", "Queries answered, by retrieval mode.", ["mode"])
EMPTY_RETRIEVALS = Counter("rag_retrieval_empty", "Queries whose retrieval returned no hit at all.", ["mode"])
DOCUMENTS_INGESTED = Counter("rag_documents_ingested", "Documents that reached status indexed.")
CHUNKS_INGESTED = Counter("rag_chunks_ingested", "Chunks written to both indexes.")
INGEST_FAILURE_REASONS = ("unreadable", "unavailable", "error")
INGEST_FAILURES = Counter(
    "rag_ingest_failures",
    "Documents that ended failed: reason is unreadable (the file), unavailable (a store), or error (a bug).",
    ["reason"],
)
# Series exist from the start, so rate() and increase() see a 0 rather than nothing.
for _reason in INGEST_FAILURE_REASONS:
    INGEST_FAILURES.labels(_reason)
CACHE_HITS = Counter("rag_cache_hits", "Cache lookups answered from the cache.", ["cache"])
CACHE_MISSES = Counter("rag_cache_misses", "Cache lookups that had to compute.", ["cache"])
BACKEND_ERRORS = Counter("rag_backend_errors", "Calls to a backend that failed.", ["backend"])
BACKEND_FALLBACKS = Counter(
    "rag_backend_fallbacks", "Requests a backend could not serve and passed to the next one.", ["backend"]
)

QUEUE_DEPTH = "rag_ingest_queue_depth"
MODEL_INFO = "rag_model_info"


def observe_stages(timings_ms: Mapping[str, float]) -> None:
    """Record a query's or a document's per-stage timings, as the services already measure them."""
    for stage, ms in timings_ms.items():
        STAGE_LATENCY.labels(stage).observe(ms / 1000.0)


class QueueDepthCollector(Collector):
    """Documents waiting or running, read from SQL at scrape time: the job table is the truth, and the
    broker's own queue length misses tasks a worker holds (prefetch, acks_late)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        statement = (
            select(Document.status, func.count())
            .where(Document.status.in_([s.value for s in UNFINISHED]))
            .group_by(Document.status)
        )
        try:
            with self.db.session() as session:
                counts = dict(session.execute(statement).tuples().all())
        except SQLAlchemyError as exc:
            log.warning("queue depth unavailable", extra={"error": type(exc).__name__})
            return
        family = GaugeMetricFamily(QUEUE_DEPTH, "Documents queued or processing.", labels=["status"])
        for status in UNFINISHED:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


class ModelInfoCollector(Collector):
    """1 per (component, model) serving now; a new label set is how alerts see a model change."""

    def __init__(self, models: Mapping[str, str]) -> None:
        self.models = dict(models)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(MODEL_INFO, "Models this process serves with.", labels=["component", "model"])
        for component, model in sorted(self.models.items()):
            family.add_metric([component, model], 1)
        yield family


class _Union(Collector):
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def scrape(extra: Sequence[Collector] = ()) -> tuple[bytes, str]:
    """The exposition body and its content type: this process's metrics (or, in multiprocess mode, all
    processes' summed) plus ``extra`` collectors evaluated now."""
    base = REGISTRY
    if multiprocess_dir():
        base = CollectorRegistry()
        MultiProcessCollector(base)
    return generate_latest(_Union([base, *extra])), CONTENT_TYPE_LATEST


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:  # all interfaces: scraped from other containers
    """Expose this process's metrics on a side port, for processes without the API (Celery workers)."""
    start_http_server(port, addr=addr)
