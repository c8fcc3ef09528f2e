"""Metric objects, scrape-time collectors and the multi-process exposition of core/metrics.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.db import Database
from core.metrics import (
    INGEST_FAILURE_REASONS,
    MODEL_INFO,
    QUEUE_DEPTH,
    ModelInfoCollector,
    QueueDepthCollector,
    observe_stages,
    scrape,
)
from core.models import Collection, Document, DocumentStatus

REPO = Path(__file__).resolve().parents[2]


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'rag.db'}")
    database.create_schema()
    yield database
    database.dispose()


def add_documents(db: Database, statuses: list[DocumentStatus]) -> None:
    with db.session() as session:
        collection = Collection(name="docs")
        session.add(collection)
        session.flush()
        for i, status in enumerate(statuses):
            session.add(
                Document(
                    collection_id=collection.id,
                    filename=f"{i}.txt",
                    content_type="text",
                    sha256=f"{i:064d}",
                    size_bytes=1,
                    blob_path=f"/blobs/{i}",
                    status=status,
                )
            )


def test_stage_timings_land_in_the_histogram() -> None:
    labels = {"stage": "rerank"}
    before = REGISTRY.get_sample_value("rag_stage_duration_seconds_sum", labels) or 0.0
    observe_stages({"rerank": 250.0})
    assert REGISTRY.get_sample_value("rag_stage_duration_seconds_sum", labels) == pytest.approx(before + 0.25)
    assert samples(scrape()[0])[("rag_stage_duration_seconds_count", (("stage", "rerank"),))] >= 1


def test_queue_depth_counts_unfinished_documents_from_sql(db: Database) -> None:
    add_documents(
        db,
        [DocumentStatus.queued] * 3 + [DocumentStatus.processing] + [DocumentStatus.indexed, DocumentStatus.failed],
    )
    body, content_type = scrape([QueueDepthCollector(db)])
    assert content_type.startswith("text/plain")
    found = samples(body)
    assert found[(QUEUE_DEPTH, (("status", "queued"),))] == 3
    assert found[(QUEUE_DEPTH, (("status", "processing"),))] == 1


def test_queue_depth_is_zero_not_absent_on_an_empty_database(db: Database) -> None:
    found = samples(scrape([QueueDepthCollector(db)])[0])
    assert found[(QUEUE_DEPTH, (("status", "queued"),))] == 0


def test_queue_depth_skips_an_unreachable_database(tmp_path: Path) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'missing' / 'rag.db'}")
    found = samples(scrape([QueueDepthCollector(broken)])[0])
    assert not any(name == QUEUE_DEPTH for name, _ in found)


def test_model_info_reports_each_component() -> None:
    collector = ModelInfoCollector({"embedding": "all-MiniLM-L6-v2", "llm": "openai:qwen"})
    found = samples(scrape([collector])[0])
    assert found[(MODEL_INFO, (("component", "embedding"), ("model", "all-MiniLM-L6-v2")))] == 1
    assert found[(MODEL_INFO, (("component", "llm"), ("model", "openai:qwen")))] == 1


def test_ingest_failure_reasons_exist_before_the_first_failure() -> None:
    found = samples(scrape()[0])
    for reason in INGEST_FAILURE_REASONS:
        assert ("rag_ingest_failures_total", (("reason", reason),)) in found


RECORD = """
from core.metrics import CHUNKS_INGESTED, REQUEST_LATENCY
CHUNKS_INGESTED.inc({n})
REQUEST_LATENCY.labels("GET", "/health", "200").observe(0.01)
"""
SCRAPE = "import sys; from core.metrics import scrape; sys.stdout.write(scrape()[0].decode())"


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    """What several uvicorn workers do: each writes its own files, any one of them serves the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    for n in (2, 5):
        subprocess.run([sys.executable, "-c", RECORD.format(n=n)], env=env, check=True, cwd=REPO)
    body = subprocess.run([sys.executable, "-c", SCRAPE], env=env, check=True, cwd=REPO, capture_output=True).stdout
    found = samples(body)
    assert found[("rag_chunks_ingested_total", ())] == 7
    key = ("rag_http_request_duration_seconds_count", (("method", "GET"), ("route", "/health"), ("status", "200")))
    assert found[key] == 2
