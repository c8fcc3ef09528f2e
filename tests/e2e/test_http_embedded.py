"""End to end over HTTP with the in-process Celery worker and embedded stores (no server at all)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import wait_for_status

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"api_key": KEY, "max_upload_mb": 1.0})
    with TestClient(create_app(configured)) as c:
        c.headers.update(AUTH)
        yield c


def upload(client: TestClient, collection: str, name: str, data: bytes, **kw) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(f"/v1/collections/{collection}/documents", files={"file": (name, data)}, **kw)
    assert response.status_code == 202, response.text
    return response.json()


def test_upload_index_and_query_real_pdfs(client: TestClient, pdf_dir: Path) -> None:
    assert client.post("/v1/collections", json={"name": "docs"}).status_code == 201
    ids = {}
    for name in ("crazyones-pdfa.pdf", "google-doc-document.pdf", "pdflatex-4-pages.pdf"):
        queued = upload(client, "docs", name, (pdf_dir / name).read_bytes())
        assert queued["status"] == "queued"
        ids[name] = queued["id"]
    for document_id in ids.values():
        done = wait_for_status(client, document_id)
        assert done["status"] == "indexed", done
        assert done["chunks"] > 0 and done["collection"] == "docs" and len(done["sha256"]) == 64

    response = client.post(
        "/v1/collections/docs/query",
        json={"query": "the round pegs in the square holes", "top_k": 3, "generate": False},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["citations"]) == 3
    first = body["citations"][0]
    assert first["document_id"] == ids["crazyones-pdfa.pdf"] and first["filename"] == "crazyones-pdfa.pdf"
    assert first["page"] == 1 and "round pegs" in first["text"]
    assert body["retrieval"]["fused"][:3] == [c["chunk_id"] for c in body["citations"]]
    assert first["chunk_id"] in body["retrieval"]["vector"]
    assert first["chunk_id"] in body["retrieval"]["keyword"]

    log = client.get(f"/v1/queries/{body['query_id']}")
    assert log.status_code == 200
    assert log.json()["retrieval"] == body["retrieval"]
    assert log.json()["query"] == "the round pegs in the square holes"


def test_same_bytes_twice_is_one_document(client: TestClient) -> None:
    client.post("/v1/collections", json={"name": "dedupe"})
    data = b"Dedupe me. The platform stores each original once per collection."
    first = upload(client, "dedupe", "a.txt", data)
    second = upload(client, "dedupe", "b.txt", data)
    assert second["id"] == first["id"] and second["duplicate"] is True


def test_bad_inputs_get_clear_client_errors(client: TestClient, pdf_dir: Path) -> None:
    client.post("/v1/collections", json={"name": "bad"})
    gif = b"GIF89a" + bytes(300)
    cases = [
        (client.post("/v1/collections/nope/documents", files={"file": ("a.txt", b"hello")}), 404),
        (
            client.post("/v1/collections/bad/documents", files={"file": ("a.gif", gif)}),
            415,
        ),
        (client.post("/v1/collections/bad/documents", files={"file": ("big.txt", b"a " * 600_000)}), 413),
        (client.post("/v1/collections/bad/documents", files={"file": ("empty.txt", b"")}), 422),
        (client.post("/v1/collections/bad/query", json={"query": "   "}), 422),
        (client.post("/v1/collections/bad/query", json={"query": "x", "top_k": "many"}), 422),
        (client.post("/v1/collections/bad/query", json={"query": "x", "filters": {"colour": "red"}}), 422),
        (client.post("/v1/collections/nope/query", json={"query": "x", "generate": False}), 404),
        (client.post("/v1/collections", json={"name": "Bad Name!"}), 422),
        (client.post("/v1/collections", json={"name": "bad"}), 409),
        (client.get("/v1/documents/does-not-exist"), 404),
        (client.get("/v1/collections", headers={"Authorization": "Bearer wrong"}), 401),
    ]
    for response, expected in cases:
        assert response.status_code == expected, (expected, response.status_code, response.text)
        assert response.json()["detail"]
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200


def test_unreadable_pdfs_end_failed_with_an_actionable_message(client: TestClient, pdf_dir: Path) -> None:
    client.post("/v1/collections", json={"name": "pdfs"})
    expectations = {
        "libreoffice-writer-password.pdf": "password",
        "imagemagick-images.pdf": "OCR",
    }
    for name, hint in expectations.items():
        queued = upload(client, "pdfs", name, (pdf_dir / name).read_bytes())
        done = wait_for_status(client, queued["id"])
        assert done["status"] == "failed" and done["chunks"] == 0
        assert hint.lower() in done["error"].lower(), done["error"]
