"""The answer cache over HTTP: hits are marked and logged, and a content change is never answered stale."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import wait_for_status


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    cached = settings.model_copy(update={"cache_exact": True, "cache_semantic": True, "cache_semantic_threshold": 0.9})
    with TestClient(create_app(cached)) as c:
        c.post("/v1/collections", json={"name": "cached"})
        yield c


def add(client: TestClient, name: str, text: str) -> str:
    response = client.post("/v1/collections/cached/documents", files={"file": (name, text.encode())})
    return wait_for_status(client, response.json()["id"])["id"]


def ask(client: TestClient, query: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/v1/collections/cached/query", json={"query": query, "generate": False, **kw})
    assert response.status_code == 200, response.text
    return response.json()


def test_hits_are_marked_and_content_changes_are_never_served_stale(client: TestClient) -> None:
    add(client, "owls.txt", "Barn owls hunt small mammals at night using their acute hearing.")
    first = ask(client, "How do barn owls hunt?")
    assert first["cache"] == {"hit": False}
    # the semantic lookup's query embedding is the one the vector search used: embedded once per query
    assert "embed" not in first["timings_ms"] and "vector" in first["timings_ms"]
    assert "embed" in ask(client, "How do barn owls hunt?", cache=False)["timings_ms"]
    again = ask(client, "how do barn owls hunt")
    assert again["cache"]["hit"] is True and again["cache"]["kind"] == "exact"
    assert again["citations"] == first["citations"] and again["query_id"] != first["query_id"]
    paraphrase = ask(client, "How do barn owls hunt")
    assert paraphrase["cache"]["hit"] is True
    log = client.get(f"/v1/queries/{again['query_id']}").json()
    assert any(e["type"] == "cache_hit" for e in log["events"])
    assert ask(client, "How do barn owls hunt?", cache=False)["cache"] == {"hit": False}

    new_id = add(client, "owls-2.txt", "Barn owls hunt by flying low over fields and listening for prey.")
    after_upload = ask(client, "How do barn owls hunt?")
    assert after_upload["cache"] == {"hit": False}
    assert new_id in {c["document_id"] for c in after_upload["citations"]}

    assert client.delete(f"/v1/documents/{new_id}").status_code == 204
    after_delete = ask(client, "How do barn owls hunt?")
    assert after_delete["cache"] == {"hit": False}
    assert new_id not in {c["document_id"] for c in after_delete["citations"]}
