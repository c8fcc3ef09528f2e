"""The Python client (sync and async) and ``ragctl --server`` against a real ``ragctl serve`` process."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from client import (
    AsyncRagClient,
    AuthenticationError,
    ConflictError,
    DoneEvent,
    NotFoundError,
    PermissionDeniedError,
    RagClient,
    RetrievalEvent,
    TokenEvent,
    UnsupportedMediaTypeError,
)
from core.errors import NotFound
from core.schemas import DocumentOut, ReindexIn
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow

ADMIN_KEY = "rag_test_admin_" + "k" * 16
TOPICS = {
    "volcanoes.txt": "Volcanoes\n\nBasaltic lava flows from shield volcanoes such as Mauna Loa in Hawaii.",
    "glaciers.md": "# Glaciers\n\nGlaciers carve U-shaped valleys as the ice moves slowly downhill.",
    "reefs.txt": "Coral reefs\n\nCoral polyps build reefs from calcium carbonate in warm shallow seas.",
}
GIF = b"GIF89a" + bytes(300)


@dataclass(frozen=True)
class Running:
    url: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``ragctl serve`` (uvicorn) on a free port with embedded defaults in a private data dir."""
    root = tmp_path_factory.mktemp("client-server")
    port = free_port()
    log = root / "serve.log"
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(root / "data"),
        "RAG_LLM_BACKEND": "none",
        "RAG_API_KEY": ADMIN_KEY,
        "PYTHONPATH": str(REPO),
    }
    env.pop("RAG_SERVER_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield Running(url, log)
    finally:
        process.terminate()
        process.wait(timeout=60)


def files_in(folder: Path) -> list[Path]:
    folder.mkdir()
    for name, text in TOPICS.items():
        (folder / name).write_text(text)
    return [folder / name for name in TOPICS]


def test_sync_client_end_to_end(server: Running, tmp_path: Path, pdf_dir: Path) -> None:
    good = files_in(tmp_path / "notes")
    password_pdf = pdf_dir / "libreoffice-writer-password.pdf"
    with RagClient(server.url, ADMIN_KEY) as rag:
        created = rag.create_collection("geo")
        assert created.name == "geo" and created.documents == 0
        assert "geo" in [c.name for c in rag.list_collections()]
        with pytest.raises(ConflictError) as conflict:
            rag.create_collection("geo")
        assert conflict.value.status_code == 409 and "geo" in conflict.value.message

        progress: list[tuple[int, int]] = []
        report = rag.upload_files(
            "geo", [*good, ("animation.gif", GIF), password_pdf], batch_size=2, progress=lambda *p: progress.append(p)
        )
        assert progress == [(2, 5), (4, 5), (5, 5)]
        assert [r.filename for r in report.rejected] == ["animation.gif"]
        refusal = report.rejected[0].error
        assert isinstance(refusal, UnsupportedMediaTypeError) and refusal.status_code == 415 and refusal.message
        assert [d.filename for d in report.documents] == [*TOPICS, password_pdf.name]
        assert isinstance(report.items[3], type(report.rejected[0]))  # the files' order is kept

        finished = rag.wait_for_documents([d.id for d in report.documents], timeout=300)
        assert [d.status for d in finished] == ["indexed"] * 3 + ["failed"]
        assert "password" in (finished[-1].error or "").lower()
        assert rag.list_documents("geo", status="indexed").total == 3
        [geo] = [c for c in rag.list_collections() if c.name == "geo"]
        assert geo.documents == 4 and geo.vectors_awaiting_build == 0  # a few chunks: searched at once

        answer = rag.query("geo", "What do coral polyps build reefs from?", cache=False)
        assert answer.answer and answer.citations and answer.citations[0].filename == "reefs.txt"
        assert answer.citations[0].number == 1 and answer.citations[0].quote
        ranked = rag.query("geo", "glaciers valleys", generate=False, top_k=3, mode="keyword")
        assert ranked.answer is None and ranked.citations[0].filename == "glaciers.md"

        events = list(rag.stream("geo", "Which volcano is in Hawaii?", cache=False))
        assert isinstance(events[0], RetrievalEvent) and events[0].candidates
        assert isinstance(events[-1], DoneEvent) and events[-1].citations
        tokens = [e.text for e in events if isinstance(e, TokenEvent)]
        assert tokens and "Mauna Loa" in "".join(tokens) and "Mauna Loa" in (events[-1].answer or "")

        conversation = rag.start_conversation("geo")
        first = rag.send_message(conversation.id, "What carves U-shaped valleys?")
        assert first.turn == 0 and first.citations[0].filename == "glaciers.md"
        streamed = list(rag.stream_message(conversation.id, "How fast does it move?"))
        done = streamed[-1]
        assert isinstance(done, DoneEvent) and done.conversation_id == conversation.id and done.turn == 1
        assert [t.ordinal for t in rag.get_conversation(conversation.id).turns] == [0, 1]
        rag.delete_conversation(conversation.id)
        with pytest.raises(NotFoundError) as missing:
            rag.get_conversation(conversation.id)
        assert missing.value.status_code == 404 and conversation.id in missing.value.message
        assert isinstance(missing.value, NotFound)  # the server's own error type catches it too

        logs = rag.query_logs(collection="geo")
        assert logs.total >= 3 and rag.get_query(answer.query_id).query == "What do coral polyps build reefs from?"

        job = rag.reindex("geo", ReindexIn(chunk_size_tokens=64))
        job = rag.wait_for_reindex(job.id, timeout=300)
        assert job.status == "done" and job.target_version == 2 and job.done == 3
        assert rag.query("geo", "calcium carbonate", generate=False).index_version == 2

        rag.delete_document(finished[-1].id)
        with pytest.raises(NotFoundError):
            rag.get_document(finished[-1].id)


def test_keys_roles_and_typed_refusals(server: Running) -> None:
    with RagClient(server.url, ADMIN_KEY) as admin:
        admin.create_collection("keys")
        admin.wait_for_document(admin.upload("keys", ("tides.txt", b"Tides\n\nThe Moon raises the tides.")).id)
        reader = admin.create_key("reader-app", "reader", ["keys"])
        assert reader.key.startswith(reader.prefix) and reader.collections == ["keys"]
        assert reader.id in [k.id for k in admin.list_keys()]
        with RagClient(server.url, reader.key) as as_reader:
            assert as_reader.query("keys", "What raises the tides?").citations
            with pytest.raises(PermissionDeniedError) as denied:
                as_reader.upload("keys", ("more.txt", b"More text."))
            assert denied.value.status_code == 403 and denied.value.message
            with pytest.raises(PermissionDeniedError):
                as_reader.create_key("escalate", "admin")
            assert admin.revoke_key(reader.id).revoked_at is not None
            with pytest.raises(AuthenticationError) as revoked:
                as_reader.list_collections()
            assert revoked.value.status_code == 401
    with RagClient(server.url, "rag_not_a_key") as stranger, pytest.raises(AuthenticationError):
        stranger.list_collections()


def test_async_client_end_to_end(server: Running) -> None:
    async def scenario() -> None:
        async with AsyncRagClient(server.url, ADMIN_KEY) as rag:
            await rag.create_collection("async")
            report = await rag.upload_files(
                "async", [("reefs.txt", TOPICS["reefs.txt"].encode()), ("bad.gif", GIF)], batch_size=5
            )
            assert [r.filename for r in report.rejected] == ["bad.gif"]
            (document,) = await rag.wait_for_documents([d.id for d in report.documents], timeout=300)
            assert isinstance(document, DocumentOut) and document.status == "indexed"
            answer = await rag.query("async", "What builds coral reefs?", cache=False)
            assert answer.citations[0].filename == "reefs.txt"
            events = [event async for event in rag.stream("async", "Where do reefs grow?", cache=False)]
            assert isinstance(events[0], RetrievalEvent) and isinstance(events[-1], DoneEvent)
            conversation = await rag.start_conversation("async")
            message = await rag.send_message(conversation.id, "What are reefs built from?")
            assert message.conversation_id == conversation.id
            assert await rag.set_memory("language", "English") == {"language": "English"}
            await rag.delete_memory()
            assert await rag.list_memory() == {}
            with pytest.raises(NotFoundError):
                await rag.get_document("does-not-exist")

    asyncio.run(scenario())


def ragctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "PYTHONPATH": str(REPO), "RAG_DATA_DIR": "/nonexistent/ragctl-must-not-open-stores"}
    base.pop("RAG_SERVER_URL", None)
    base.pop("RAG_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**base, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ragctl_against_a_running_server(server: Running, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    files_in(folder)
    (folder / "empty.txt").write_bytes(b"")
    remote = ("--server", server.url, "--api-key", ADMIN_KEY)

    ingested = ragctl(*remote, "ingest", str(folder), "-c", "cli", "--batch-size", "2")
    out = ingested.stdout + ingested.stderr
    assert ingested.returncode == 1, out
    assert re.search(r"empty\.txt: .*empty", out, re.IGNORECASE), out
    assert "3 of 4 files indexed into 'cli'" in ingested.stdout
    with RagClient(server.url, ADMIN_KEY) as rag:
        listed = rag.list_documents("cli")
        assert sorted(d.filename for d in listed.items) == sorted(TOPICS)
        assert all(d.status == "indexed" for d in listed.items)

    # the settings instead of the options
    settings = {"RAG_SERVER_URL": server.url, "RAG_API_KEY": ADMIN_KEY}
    asked = ragctl("query", "What carves U-shaped valleys?", "-c", "cli", env=settings)
    assert asked.returncode == 0, asked.stderr
    assert "glaciers.md" in asked.stdout and "[1]" in asked.stdout and "query_id=" in asked.stdout
    streamed = ragctl(*remote, "query", "Which volcano is in Hawaii?", "-c", "cli", "--stream")
    assert streamed.returncode == 0 and "Mauna Loa" in streamed.stdout, streamed.stderr

    created = ragctl(*remote, "keys", "create", "reader-cli", "--role", "reader", "-c", "cli")
    assert created.returncode == 0, created.stderr
    key, key_id = created.stdout.split()[0], re.search(r"id (\w+)", created.stdout).group(1)  # type: ignore[union-attr]
    listing = ragctl(*remote, "keys", "list")
    assert re.search(rf"{key_id} .*reader .*cli .*active .*reader-cli", listing.stdout), listing.stdout
    refused = ragctl("--server", server.url, "--api-key", key, "ingest", str(folder / "reefs.txt"), "-c", "cli")
    assert refused.returncode == 2 and "error:" in refused.stderr, refused.stdout + refused.stderr
    assert ragctl(*remote, "keys", "revoke", key_id).returncode == 0
    assert re.search(rf"{key_id} .*revoked", ragctl(*remote, "keys", "list").stdout)

    reindexed = ragctl(*remote, "reindex", "cli", "--chunk-size", "48")
    assert reindexed.returncode == 0, reindexed.stderr
    assert "cli now serves index version 2 (3 documents)" in reindexed.stdout

    missing = ragctl(*remote, "query", "anything", "-c", "no-such-collection")
    assert missing.returncode == 2 and "no-such-collection" in missing.stderr


def test_ragctl_eval_over_http_scores_as_the_in_process_run(server: Running, tmp_path: Path) -> None:
    from core.config import Settings
    from evaluation.datasets import load_dataset
    from evaluation.in_process import ServicesTarget
    from evaluation.runner import ALL_MODES, EvalOptions, run_eval
    from runtime.services import Services

    eval_set = REPO / "eval_sets" / "platform-docs"
    out = tmp_path / "http.json"
    args = ["--dataset", str(eval_set), "--collection", "evalhttp", "--mode", "all", "--generate"]
    ran = ragctl(
        "--server", server.url, "--api-key", ADMIN_KEY, "eval", *args, "--answer-mode", "extractive", "--out", str(out)
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    over_http = __import__("json").loads(out.read_text())
    assert over_http["settings"]["server"] == server.url and over_http["errors"] == []
    assert over_http["ingest"]["documents"] == 18 and over_http["ingest"]["failed"] == 0

    services = Services(Settings(data_dir=tmp_path / "local", llm_backend="none", api_key=None, _env_file=None))
    try:
        options = EvalOptions(modes=ALL_MODES, generate=True, answer_modes=("extractive",), progress=False)
        local = run_eval(ServicesTarget(services), load_dataset(eval_set), "evallocal", options)
    finally:
        services.close()
    assert over_http["ingest"]["chunks"] == local["ingest"]["chunks"]
    for mode in ALL_MODES:
        for metric in ("ndcg@10", "recall@100"):
            assert over_http["modes"][mode]["metrics"][metric] == pytest.approx(
                local["modes"][mode]["metrics"][metric], abs=0.02
            )
    for metric in ("answer_f1", "citation_rate", "abstention_rate"):
        assert over_http["metrics"][metric] == pytest.approx(local["metrics"][metric], abs=0.02)
    assert over_http["metrics"]["answer_similarity"] is None  # no embedding model in the client's process
