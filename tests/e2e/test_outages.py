"""Dependencies going away: a clear 503 with a retry hint, and nothing half-written."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from api.app import create_app
from core.config import Settings
from core.db import make_engine

DEAD_PG = "postgresql+psycopg://postgres@127.0.0.1:9/gone"


def test_database_outage_gives_503_and_stores_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm_backend="none", api_key="k", _env_file=None)
    with TestClient(create_app(settings), headers={"Authorization": "Bearer k"}) as client:
        assert client.post("/v1/collections", json={"name": "c"}).status_code == 201
        db = client.app.state.services.db  # type: ignore[attr-defined]
        healthy_engine, healthy_factory = db.engine, db._factory
        db.engine = make_engine(DEAD_PG)  # the database host goes away: connections are refused
        db._factory = sessionmaker(db.engine, expire_on_commit=False)
        try:
            upload = client.post("/v1/collections/c/documents", files={"file": ("a.txt", b"some text")})
            query = client.post("/v1/collections/c/query", json={"query": "text", "generate": False})
            listing = client.get("/v1/collections")
        finally:
            db.engine, db._factory = healthy_engine, healthy_factory
        for response in (upload, query, listing):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] and "retry" in response.json()["detail"].lower()
        assert not list(settings.blob_dir.rglob("*")) if settings.blob_dir.exists() else True
        assert client.get("/v1/collections/c/documents").json()["total"] == 0


def test_vector_store_outage_gives_503_and_the_document_is_not_reported_done(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm_backend="none", qdrant_url="http://127.0.0.1:9", _env_file=None)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/collections", json={"name": "c"})
        response = client.post("/v1/collections/c/query", json={"query": "anything", "generate": False})
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "vector store" in response.json()["detail"]
        queued = client.post("/v1/collections/c/documents", files={"file": ("a.txt", b"some text here")}).json()
        document = client.get(f"/v1/documents/{queued['id']}").json()
        assert document["status"] in ("queued", "processing")  # retried with backoff, never "indexed"
