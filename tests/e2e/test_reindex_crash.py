"""A re-index killed halfway leaves the serving version untouched, and the next start finishes it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from core.collections import get_collection
from core.config import Settings
from core.models import JobStatus, ReindexJob
from generation.query_types import QueryRequest
from ingest.reindex import BATCH
from ingest.service import Upload
from runtime.services import Services
from tests.conftest import REPO

DOCUMENTS = 3 * BATCH  # several re-index batches, so it can be killed between two of them
TOPICS = ["owls", "tides", "bread", "comets", "glaciers", "violins", "bees", "volcanoes", "coral", "lichen"]


def seed(settings: Settings) -> None:
    services = Services(settings)
    try:
        services.ingest.create_collection("crash")
        ids: list[str] = []
        for n in range(DOCUMENTS):
            topic = TOPICS[n % len(TOPICS)]
            text = f"Notes {n} about {topic}. The study of {topic} continues with observation number {n}."
            services.ingest.submit("crash", [Upload(f"{topic}-{n}.txt", text.encode())], None, ids.extend)
        services.ingest.index(ids)
    finally:
        services.close()


def serving_version(settings: Settings) -> int:
    services = Services(settings)
    try:
        return get_collection(services.db, "crash").index_version
    finally:
        services.db.dispose()


def job_progress(settings: Settings) -> tuple[int, int] | None:
    services = Services(settings)
    try:
        with services.db.session() as session:
            job = session.query(ReindexJob).first()
            return (job.done, job.total) if job else None
    finally:
        services.db.dispose()


def test_reindex_killed_halfway_keeps_serving_and_resumes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm_backend="none", _env_file=None)
    seed(settings)
    env = {**os.environ, "RAG_DATA_DIR": str(settings.data_dir), "RAG_LLM_BACKEND": "none", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "reindex", "crash", "--chunk-size", "48", "--chunk-overlap", "8"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while (progress := job_progress(settings)) is None or not 0 < progress[0] < progress[1]:
        assert child.poll() is None and time.monotonic() < deadline, "re-index finished or died before halfway"
        time.sleep(0.02)
    child.kill()  # SIGKILL halfway through
    child.wait()

    assert serving_version(settings) == 1
    services = Services(settings)
    try:
        (job_id,) = services.ingest.unfinished_job_ids()  # left running: the next start resumes it
        hits = services.queries.query("crash", QueryRequest(query="glaciers observation", generate=False)).hits
        assert hits and hits[0].payload["filename"].startswith("glaciers")
    finally:
        services.close()

    with TestClient(create_app(settings)) as client:  # start-up recovery re-queues the job
        ingest = client.app.state.services.ingest  # type: ignore[attr-defined]
        deadline = time.monotonic() + 300
        while ingest.unfinished_job_ids():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        view = ingest.get_job(job_id)
        assert view.job.status == JobStatus.done and view.job.attempts == 2
        result = client.post("/v1/collections/crash/query", json={"query": "glaciers observation", "generate": False})
        body = result.json()
        assert body["index_version"] == 2 and body["citations"][0]["filename"].startswith("glaciers")
