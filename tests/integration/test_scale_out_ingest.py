"""Scale-out ingest for real: PostgreSQL for state, Redis as broker, a separate `ragctl worker` process.

Both embedded Qdrant engines lock their folder to one process, so here the worker process owns the
vector store while it runs and the API reads it after the worker stops (in the compose stack both talk
to a Qdrant server instead, and the keyword index lives in Qdrant's sparse vectors).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from core.config import Settings
from core.models import Chunk
from core.schema import upgrade_database
from ingest.service import Upload
from runtime.services import Services
from tests.e2e.helpers import wait_for_status
from tests.services import missing_service

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/11"


def services_up() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        psycopg.connect(PG_ADMIN, connect_timeout=2).close()
    except Exception as exc:  # the reason is printed in the skip message
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    reason = services_up()
    if reason:
        missing_service(f"PostgreSQL/Redis not reachable on 127.0.0.1 ({reason})")
    name = f"rag_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade_database(url)  # what the compose `migrate` service does before the API and workers start
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_ingest_through_redis_and_a_worker_process(tmp_path: Path, pg_url: str, pdf_dir: Path) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        broker_url=REDIS_URL,
        llm_backend="none",
        _env_file=None,
    )
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_DATABASE_URL": pg_url,
        "RAG_BROKER_URL": REDIS_URL,
        "RAG_LLM_BACKEND": "none",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with TestClient(create_app(settings)) as client:
            assert client.post("/v1/collections", json={"name": "scale"}).status_code == 201
            ids = []
            for name in ("crazyones-pdfa.pdf", "google-doc-document.pdf", "imagemagick-images.pdf"):
                data = (pdf_dir / name).read_bytes()
                response = client.post("/v1/collections/scale/documents", files={"file": (name, data)})
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            results = [wait_for_status(client, i, timeout=240) for i in ids]
            assert [r["status"] for r in results] == ["indexed", "indexed", "failed"], (
                results,
                (tmp_path / "worker.log").read_text()[-3000:],
            )

            worker.send_signal(signal.SIGTERM)  # warm shutdown releases the embedded vector store
            assert worker.wait(timeout=60) == 0

            response = client.post(
                "/v1/collections/scale/query",
                json={"query": "Explicit is better than implicit", "generate": False, "top_k": 2},
            )
            assert response.status_code == 200, response.text
            assert response.json()["citations"][0]["filename"] == "google-doc-document.pdf"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def scale_settings(tmp_path: Path, pg_url: str) -> tuple[Settings, dict[str, str]]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=pg_url, broker_url=REDIS_URL, llm_backend="none", _env_file=None
    )
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_DATABASE_URL": pg_url,
        "RAG_BROKER_URL": REDIS_URL,
        "RAG_LLM_BACKEND": "none",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    return settings, env


def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def assert_indexed_exactly_once(settings: Settings, document_id: str) -> None:
    """Vector points, keyword entries, chunk rows and the document's count all agree: nothing doubled."""
    services = Services(settings)
    try:
        document, collection = services.ingest.get_document(document_id)
        with services.db.session() as session:
            rows = session.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == document_id))
        index = f"{collection}__v1"
        assert document.status == "indexed" and document.chunk_count > 0
        assert rows == document.chunk_count
        assert services.vectors.count(index) == document.chunk_count
        assert services.keywords.count(index) == document.chunk_count
    finally:
        services.close()


def test_worker_killed_mid_ingest_indexes_exactly_once_after_restart(
    tmp_path: Path, pg_url: str, pdf_dir: Path
) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings, env = scale_settings(tmp_path, pg_url)
    worker = start_worker(env, tmp_path / "worker1.log")
    try:
        with TestClient(create_app(settings)) as client:
            client.post("/v1/collections", json={"name": "kill"})
            book = (pdf_dir / "GeoTopo-komprimiert.pdf").read_bytes()
            document_id = client.post("/v1/collections/kill/documents", files={"file": ("book.pdf", book)}).json()["id"]
            wait_for(lambda: client.get(f"/v1/documents/{document_id}").json()["status"] == "processing", 120)
            time.sleep(1.5)  # parsing done, embedding under way
            worker.kill()  # SIGKILL: no warm shutdown, the task is neither finished nor acknowledged
            worker.wait(timeout=30)
            assert client.get(f"/v1/documents/{document_id}").json()["status"] == "processing"

            worker = start_worker(env, tmp_path / "worker2.log")  # start-up recovery re-queues it
            done = wait_for_status(client, document_id, timeout=300)
            assert done["status"] == "indexed", (tmp_path / "worker2.log").read_text()[-3000:]
        stop(worker)
        assert_indexed_exactly_once(settings, document_id)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_tasks_lost_by_the_broker_are_redriven_from_sql(tmp_path: Path, pg_url: str) -> None:
    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()
    settings, env = scale_settings(tmp_path, pg_url)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/collections", json={"name": "lost"})
        first = client.post("/v1/collections/lost/documents", files={"file": ("a.txt", b"Alpha notes.")}).json()
        assert broker.llen("ingest") == 1
        broker.flushdb()  # what a Redis restart without persistence does to queued tasks
        redrive = {**env, "RAG_REDRIVE_AFTER_S": "1", "RAG_REDRIVE_EVERY_S": "1"}
        worker = start_worker(redrive, tmp_path / "w.log", "--beat")
        try:
            assert wait_for_status(client, first["id"], timeout=120)["status"] == "indexed"  # start-up recovery
            # a task lost while the worker runs (its message never reached the queue): the periodic re-drive
            services = client.app.state.services  # type: ignore[attr-defined]
            [lost] = services.ingest.submit("lost", [Upload("b.txt", b"Beta notes.")], None, lambda _ids: None)
            assert wait_for_status(client, lost.document.id, timeout=120)["status"] == "indexed", (
                tmp_path / "w.log"
            ).read_text()[-3000:]
        finally:
            stop(worker)
