"""The MCP server driven by the official ``mcp`` SDK client: streamable HTTP against a real uvicorn server, and
stdio against ``ragctl mcp`` started as a subprocess on its own data dir."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from core.config import Settings
from core.keys import create_key
from ingest.service import Upload
from runtime.services import Services
from tests.e2e.live_app import ROOT_KEY, LiveApp, eval_corpus, live_app

REPO = Path(__file__).resolve().parents[2]
QUESTION = "Which language model answers by default?"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    yield from live_app(tmp_path_factory.mktemp("mcp") / "data")


def over_http(app: LiveApp, key: str) -> Client:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    return Client(streamable_http_client(f"{app.url}/mcp", http_client=http))


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        body = result.structured_content
        return body.get("result", body) if set(body) == {"result"} else body
    return json.loads(result.content[0].text)


async def check_answer_and_search(client: Client, chunk_text: Any) -> None:
    tools = {tool.name for tool in (await client.list_tools()).tools}
    assert tools == {"list_collections", "search", "ask", "get_document"}
    found = structured(await client.call_tool("search", {"query": QUESTION, "collection": "docs", "top_k": 3}))
    assert [hit["rank"] for hit in found["results"]] == [1, 2, 3]
    assert found["results"][0]["filename"] == "llm-backends.txt" and found["results"][0]["ordinal"] == 0
    scores = [hit["score"] for hit in found["results"]]
    assert scores == sorted(scores, reverse=True)
    answer = structured(await client.call_tool("ask", {"question": QUESTION, "collection": "docs"}))
    assert answer["abstained"] is False and "[1]" in answer["answer"]
    for cited in answer["citations"]:
        assert chunk_text(cited["chunk_id"])[cited["start"] : cited["end"]] == cited["quote"]
    unknown = structured(await client.call_tool("ask", {"question": "Who painted the ceiling?", "collection": "docs"}))
    assert unknown["abstained"] is True and unknown["abstain_reason"] in ("low_evidence", "no_context")


def test_http_tools_answer_with_citations(app: LiveApp) -> None:
    async def main() -> None:
        async with over_http(app, ROOT_KEY) as client:
            await check_answer_and_search(client, app.chunk_text)
            names = {c["name"] for c in structured(await client.call_tool("list_collections", {}))}
            assert names == {"docs", "other"}

    anyio.run(main)


def test_http_documents_are_resources(app: LiveApp) -> None:
    document_id = app.documents["llm-backends.txt"]

    async def main() -> None:
        async with over_http(app, ROOT_KEY) as client:
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert {f"rag://documents/{i}" for i in app.documents.values()} <= listed
            read = await client.read_resource(f"rag://documents/{document_id}")
            body = json.loads(read.contents[0].text)
            assert body["filename"] == "llm-backends.txt" and body["collection"] == "docs"
            assert "SmolLM2" in " ".join(c["text"] for c in body["chunks"])
            tool = structured(await client.call_tool("get_document", {"document_id": document_id}))
            assert tool == body

    anyio.run(main)


def test_http_reader_sees_only_its_collection(app: LiveApp) -> None:
    foreign = app.documents["lighthouse.txt"]

    async def main() -> None:
        async with over_http(app, app.reader_key) as client:
            assert [c["name"] for c in structured(await client.call_tool("list_collections", {}))] == ["docs"]
            refused = await client.call_tool("search", {"query": "lighthouse", "collection": "other"})
            assert refused.is_error and "not allowed" in refused.content[0].text
            hidden = await client.call_tool("get_document", {"document_id": foreign})
            assert hidden.is_error and "does not exist" in hidden.content[0].text
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert (
                f"rag://documents/{foreign}" not in listed
                and f"rag://documents/{app.documents['install.txt']}" in listed
            )
            with pytest.raises(MCPError):
                await client.read_resource(f"rag://documents/{foreign}")
            assert structured(await client.call_tool("ask", {"question": QUESTION, "collection": "docs"}))["answer"]

    anyio.run(main)


def test_http_needs_a_valid_key(app: LiveApp) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    for headers in ({}, {"Authorization": "Bearer rag_wrong"}):
        response = httpx.post(f"{app.url}/mcp", json=initialize, headers=headers, timeout=30)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"

    async def main() -> None:
        async with over_http(app, "rag_wrong") as client:
            await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own (grouped) errors
        anyio.run(main)


@pytest.fixture(scope="module")
def stdio_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An indexed collection in a data dir of its own (the stores lock their folder to one process), and a
    reader key scoped to a collection that is not it."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("stdio") / "data", llm_backend="none", _env_file=None)
    services = Services(settings)
    try:
        services.ingest.create_collection("notes")
        queued: list[str] = []
        uploads = [Upload(name, data) for name, data in eval_corpus().items()]
        services.ingest.submit("notes", uploads, None, queued.extend)
        services.ingest.index_in_batches(queued)
        key = create_key(services.db, "elsewhere", "reader", ["elsewhere"]).key
    finally:
        services.close()
    return settings.data_dir, key


def over_stdio(data_dir: Path, *args: str) -> Client:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAG_DATA_DIR": str(data_dir),
        "RAG_LLM_BACKEND": "none",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("RAG_API_KEY", None)
    return Client(StdioServerParameters(command=sys.executable, args=["-m", "cli.main", "mcp", *args], env=env))


def test_stdio_answers_from_the_local_stores(stdio_data: tuple[Path, str]) -> None:
    data_dir, _ = stdio_data

    async def main() -> None:
        async with over_stdio(data_dir) as client:
            assert "ask" in {tool.name for tool in (await client.list_tools()).tools}
            answer = structured(await client.call_tool("ask", {"question": QUESTION, "collection": "notes"}))
            assert "[1]" in answer["answer"] and answer["citations"][0]["filename"] == "llm-backends.txt"
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            assert len(uris) == len(eval_corpus())
            body = json.loads((await client.read_resource(uris[0])).contents[0].text)
            assert body["collection"] == "notes" and body["chunks"]

    anyio.run(main)


def test_stdio_with_a_key_keeps_its_scope(stdio_data: tuple[Path, str]) -> None:
    data_dir, key = stdio_data

    async def main() -> None:
        async with over_stdio(data_dir, "--key", key) as client:
            assert structured(await client.call_tool("list_collections", {})) == []
            refused = await client.call_tool("search", {"query": "lighthouse", "collection": "notes"})
            assert refused.is_error and "not allowed" in refused.content[0].text

    anyio.run(main)
