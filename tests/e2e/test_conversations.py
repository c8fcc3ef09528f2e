"""Conversations over HTTP on the project's own eval set: follow-ups, compression, memory, deletion."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import wait_for_status

EVAL_SET = Path(__file__).resolve().parents[2] / "eval_sets" / "platform-docs"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("conv") / "data",
        llm_backend="none",
        history_recent_turns=1,
        _env_file=None,
    )
    with TestClient(create_app(settings)) as c:
        c.post("/v1/collections", json={"name": "docs"})
        ids = []
        for line in (EVAL_SET / "corpus.jsonl").read_text().splitlines():
            doc = json.loads(line)
            body = f"{doc['title']}\n\n{doc['text']}".encode()
            response = c.post("/v1/collections/docs/documents", files={"file": (f"{doc['_id']}.txt", body)})
            ids.append(response.json()["id"])
        for document_id in ids:
            assert wait_for_status(c, document_id)["status"] == "indexed"
        yield c


def say(client: TestClient, conversation_id: str, message: str) -> dict:
    response = client.post(
        f"/v1/conversations/{conversation_id}/messages", json={"message": message, "generate": False, "top_k": 3}
    )
    assert response.status_code == 200, response.text
    return response.json()


def top_files(reply: dict) -> list[str]:
    return [c["filename"] for c in reply["citations"]]


def ask_alone(client: TestClient, query: str) -> list[str]:
    reply = client.post("/v1/collections/docs/query", json={"query": query, "generate": False, "top_k": 3}).json()
    return top_files(reply)


def test_follow_ups_retrieve_the_right_documents_with_history(client: TestClient) -> None:
    conversation = client.post("/v1/collections/docs/conversations").json()
    questions = ["Which language model answers by default?", "How big is it?", "Can I swap it for a bigger one?"]
    replies = [say(client, conversation["id"], q) for q in questions]
    for reply in replies:
        assert top_files(reply)[0] == "llm-backends.txt", (reply["rewritten_query"], top_files(reply))
    # the follow-ups alone are ambiguous: without the history they find other documents first
    for question in questions[1:]:
        assert ask_alone(client, question)[0] != "llm-backends.txt"
    assert replies[2]["rewritten_query"].startswith("Which language model answers by default?")

    stored = client.get(f"/v1/conversations/{conversation['id']}").json()
    assert [t["question"] for t in stored["turns"]] == questions
    assert all(t["query_id"] for t in stored["turns"])
    assert stored["turns"][1]["rewrite_method"] == "fallback"
    log = client.get(f"/v1/queries/{replies[2]['query_id']}").json()
    assert any(e["type"] == "query_rewritten" for e in log["events"])


def test_older_turns_are_summarized_once_and_stored(client: TestClient) -> None:
    conversation = client.post("/v1/collections/docs/conversations").json()
    questions = ["What is a collection?", "Which names are allowed?", "What if the name exists?", "And deletion?"]
    replies = [say(client, conversation["id"], q) for q in questions]
    stored = client.get(f"/v1/conversations/{conversation['id']}").json()
    # one recent turn kept verbatim: before the 4th turn, turns 0-1 aged out once each (turn 2 is recent)
    assert stored["summarized_turns"] == 2
    assert "What is a collection?" in stored["summary"] and "Which names are allowed?" in stored["summary"]
    assert stored["summary"].count("What is a collection?") == 1
    events = [e["type"] for e in client.get(f"/v1/queries/{replies[2]['query_id']}").json()["events"]]
    assert "history_summarized" in events


def test_history_truncation_is_logged_at_the_budget(client: TestClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    conversation = client.post("/v1/collections/docs/conversations").json()
    say(client, conversation["id"], "What is a collection? " * 40)
    say(client, conversation["id"], "Tell me more.")
    original = services.settings.history_budget_share
    services.settings.history_budget_share = 0.01
    try:
        plan = services.conversations.plan(conversation["id"], "root", "And then?")
    finally:
        services.settings.history_budget_share = original
    assert any(e["type"] == "history_truncated" for e in plan.events)


def test_memory_applies_to_prompts_until_deleted(client: TestClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    assert client.put("/v1/memory/language", json={"value": "French"}).status_code == 200
    assert client.get("/v1/memory").json() == {"language": "French"}
    conversation = client.post("/v1/collections/docs/conversations").json()
    plan = services.conversations.plan(conversation["id"], "root", "What is BM25?")
    assert "language: French" in (plan.context.instructions or "")
    assert client.delete("/v1/memory/language").status_code == 204
    assert client.delete("/v1/memory/language").status_code == 404
    plan = services.conversations.plan(conversation["id"], "root", "What is BM25?")
    assert plan.context.instructions is None


def test_delete_conversation_and_forget_a_keys_data(client: TestClient) -> None:
    conversation = client.post("/v1/collections/docs/conversations").json()
    reply = say(client, conversation["id"], "What is hybrid fusion?")
    assert client.delete(f"/v1/conversations/{conversation['id']}").status_code == 204
    assert client.get(f"/v1/conversations/{conversation['id']}").status_code == 404
    client.put("/v1/memory/length", json={"value": "short"})
    forgotten = client.delete("/v1/admin/keys/root/data").json()
    assert forgotten["memories"] == 1 and forgotten["query_logs"] >= 1
    log = client.get(f"/v1/queries/{reply['query_id']}").json()
    assert log["query"] == "" and log["answer"] is None and log["retrieval"]["fused"]
    assert client.get("/v1/memory").json() == {}


def test_a_message_racing_a_delete_of_its_conversation_is_404(client: TestClient) -> None:
    """The conversation is deleted while the answer is being computed (between the read and the write)."""
    conversation_id = client.post("/v1/collections/docs/conversations").json()["id"]
    queries = client.app.state.services.queries  # type: ignore[attr-defined]
    original = queries.query

    def query_then_lose_the_conversation(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert client.delete(f"/v1/conversations/{conversation_id}").status_code == 204
        return original(*args, **kwargs)

    queries.query = query_then_lose_the_conversation
    try:
        response = client.post(
            f"/v1/conversations/{conversation_id}/messages", json={"message": "How do I upload?", "generate": False}
        )
    finally:
        del queries.query
    assert response.status_code == 404, response.text
    assert client.get(f"/v1/conversations/{conversation_id}").status_code == 404
