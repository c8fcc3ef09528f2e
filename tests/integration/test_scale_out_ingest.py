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
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import wait_for_status

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
        pytest.skip(f"PostgreSQL/Redis not reachable on 127.0.0.1 ({reason})")
    name = f"rag_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
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
