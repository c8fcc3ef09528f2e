"""`ragctl serve` as a user runs it: a real uvicorn process, its banner and key, crash recovery."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.e2e.helpers import wait_for_status


class Server:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_LLM_BACKEND": "none", "PYTHONPATH": str(REPO)}
        env.pop("RAG_API_KEY", None)
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(self.port)],
            env=env,
            cwd=REPO,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"server not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def banner_key(log: Path) -> str:
    match = re.findall(r"API key.*?: (rag_\S+)", log.read_text())
    assert match, log.read_text()[-2000:]
    return match[-1]


def test_serve_prints_key_and_example_and_keeps_the_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    server = Server(data, log)
    try:
        key = banner_key(log)
        text = log.read_text()
        assert "created on first start" in text and "curl" in text and server.url in text
        assert f"Web console: {server.url}/ui/" in text
        assert httpx.get(f"{server.url}/ui/login").status_code == 200
        assert httpx.get(f"{server.url}/v1/collections").status_code == 401
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert client.post("/v1/collections", json={"name": "docs"}).status_code == 201
    finally:
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells what stopped it
        assert server.stop() in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in log.read_text()
    assert (data / "api_key").read_text().strip() == key
    printed = log.read_text().count(key)
    again = Server(data, log)
    try:
        assert log.read_text().count(key) == printed  # shown by the start that created it, never again
        assert "kept in <data dir>/api_key (not shown)" in log.read_text()
        assert httpx.get(f"{again.url}/v1/collections", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        again.stop()


def test_an_operator_supplied_key_is_never_printed() -> None:
    from cli.main import banner

    text = banner("http://127.0.0.1:8000", "operator-secret-value", created=False, from_env=True)
    assert "operator-secret-value" not in text and "RAG_API_KEY (not shown)" in text
    assert "rag_generated" in banner("http://127.0.0.1:8000", "rag_generated", created=True, from_env=False)


def test_documents_queued_when_the_server_is_killed_are_indexed_after_restart(tmp_path: Path, pdf_dir: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    server = Server(data, log)
    key = banner_key(log)
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    client.post("/v1/collections", json={"name": "crash"})
    names = ["GeoTopo-komprimiert.pdf", "crazyones-pdfa.pdf", "google-doc-document.pdf", "pdflatex-4-pages.pdf"]
    ids = [
        client.post("/v1/collections/crash/documents", files={"file": (n, (pdf_dir / n).read_bytes())}).json()["id"]
        for n in names
    ]
    statuses = [client.get(f"/v1/documents/{i}").json()["status"] for i in ids]
    server.stop(signal.SIGKILL)
    if all(s == "indexed" for s in statuses):
        pytest.fail("everything was indexed before the kill; the test needs a slower first document")

    restarted = Server(data, log)
    client = httpx.Client(base_url=restarted.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        finished = [wait_for_status(client, i, timeout=300) for i in ids]
        assert [f["status"] for f in finished] == ["indexed"] * 4
        listed = client.get("/v1/collections/crash/documents").json()
        assert listed["total"] == 4
        services_counts = client.post(
            "/v1/collections/crash/query", json={"query": "Topologie", "generate": False, "top_k": 100}
        ).json()
        chunk_ids = services_counts["retrieval"]["keyword"]
        assert len(chunk_ids) == len(set(chunk_ids))
    finally:
        restarted.stop()
