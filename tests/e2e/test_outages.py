"""Dependencies going away: a clear 503 with a retry hint, and nothing half-written."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import PG_ADMIN, database

DATABASE_DOWN = "The database is unreachable; retry in a few seconds."
VECTOR_STORE_DOWN = "The vector store (Qdrant) is unreachable; retry in a few seconds."


@contextmanager
def refusing_connections(url: str) -> Iterator[None]:
    """The PostgreSQL database goes away for the platform: open connections are cut and new ones refused."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        yield
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def test_database_outage_gives_503_and_stores_nothing(tmp_path: Path) -> None:
    with database("postgresql") as url:
        assert url is not None
        settings = Settings(
            data_dir=tmp_path / "data", database_url=url, llm_backend="none", api_key="k", _env_file=None
        )
        with TestClient(create_app(settings), headers={"Authorization": "Bearer k"}) as client:
            assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
            with refusing_connections(url):
                upload = client.post("/v1/collections/c/documents", files={"file": ("a.txt", b"some text")})
                query = client.post("/v1/collections/c/query", json={"query": "text", "generate": False})
                listing = client.get("/v1/collections")
            for response in (upload, query, listing):
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "5"
                assert response.json()["detail"] == DATABASE_DOWN
            assert not settings.blob_dir.exists() or list(settings.blob_dir.rglob("*")) == []
            listed = client.get("/v1/collections/c/documents")
            assert listed.status_code == 200, listed.text
            assert listed.json()["total"] == 0


def test_vector_store_outage_gives_503_and_the_document_is_not_reported_done(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm_backend="none", qdrant_url="http://127.0.0.1:9", _env_file=None)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
        response = client.post("/v1/collections/c/query", json={"query": "anything", "generate": False})
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json()["detail"] == VECTOR_STORE_DOWN
        queued = client.post("/v1/collections/c/documents", files={"file": ("a.txt", b"some text here")})
        assert queued.status_code == 202, queued.text
        document = queued.json()
        deadline = time.monotonic() + 60
        while document["started_at"] is None:  # until the worker has taken it once
            assert time.monotonic() < deadline, document
            time.sleep(0.05)
            document = client.get(f"/v1/documents/{document['id']}").json()
        # The failed write is retried with backoff: the document stays held by its task, never "indexed".
        assert document["status"] == "processing"
        assert document["error"] is None and document["chunks"] == 0
