"""What every benchmark needs: a real ``ragctl serve`` process on loopback, the data, and an honest report.

The server is started exactly as a user starts it (``python -m cli.main serve``) with a private data dir, so
figures include uvicorn, auth, rate limiting, SQL logging and the in-process worker. Reports, tables and
percentiles come from ``bench.common``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO, shared_data_dir

UNLIMITED = "1000000/minute"
"""Benchmarks raise the per-key rate limits (default 120 queries and 60 uploads a minute) to this."""

BENCH_ENV = {
    "RAG_RATE_LIMIT_QUERY": UNLIMITED,
    "RAG_RATE_LIMIT_UPLOAD": UNLIMITED,
    "RAG_LLM_BACKEND": "none",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
STARTUP_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of one process from /proc (no psutil needed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_counts(pid: int) -> dict[str, int]:
    """Threads and open file descriptors: the other two things a leaking server grows."""
    threads = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Threads:")
    )
    return {"threads": threads, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


@dataclass
class Server:
    """A running ``ragctl serve``; ``key`` is the admin key it created (read from the data dir)."""

    url: str
    key: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def async_client(self, timeout: float = 60.0, connections: int = 100) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout, limits=limits)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_problems(self) -> dict[str, int]:
        """Error and warning lines the server logged (JSON lines; tracebacks count once per line)."""
        counts = {"error": 0, "warning": 0, "traceback": 0}
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                counts["traceback"] += 1
            try:
                level = json.loads(line).get("level")
            except (json.JSONDecodeError, AttributeError):
                continue
            if level in ("error", "critical"):
                counts["error"] += 1
            elif level == "warning":
                counts["warning"] += 1
        return counts

    def error_lines(self, limit: int = 5) -> list[str]:
        """The first error lines: message, path and the last lines of the traceback."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                body = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(body, dict) or body.get("level") not in ("error", "critical"):
                continue
            where = {k: body[k] for k in ("path", "incident", "logger") if k in body}
            tail = " | ".join(str(body.get("exc", "")).strip().splitlines()[-3:])
            found.append(f"{body.get('msg')} {where} {tail}"[:600])
            if len(found) >= limit:
                break
        return found


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"ragctl serve exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"ragctl serve not ready after {timeout:.0f} s:\n{server.log_tail()}")


def stop(server: Server, timeout: float = 60.0) -> int:
    """SIGTERM (uvicorn's graceful shutdown persists the embedded indexes), SIGKILL if it hangs."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            return server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
    return server.process.wait(timeout=30)


@contextmanager
def serve(env: dict[str, str] | None = None, data_dir: Path | None = None) -> Iterator[Server]:
    """Start ``ragctl serve`` on 127.0.0.1 and a free port; stop it on exit.

    ``env`` adds ``RAG_*`` settings to ``BENCH_ENV`` (rate limits raised, no LLM unless asked). Passing a
    ``data_dir`` reuses an indexed corpus across restarts (settings such as cache thresholds differ per
    start); without one a temporary dir is made and removed afterwards.
    """
    owned = data_dir is None
    folder = Path(tempfile.mkdtemp(prefix="rag-bench-")) if owned else data_dir
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {**BENCH_ENV, **(env or {})}
    full_env = {**os.environ, **settings, "RAG_DATA_DIR": str(folder), "PYTHONPATH": str(REPO)}
    full_env.pop("RAG_API_KEY", None)
    log_path = folder / f"serve-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", "", folder, log_path, process, settings)
    try:
        _wait_ready(server, STARTUP_TIMEOUT_S)
        server.key = (folder / "api_key").read_text().strip()
        yield server
    finally:
        stop(server)
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


def add_server_env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server process, e.g. OMP_NUM_THREADS=1 (repeatable)",
    )


def server_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--server-env wants NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


# --- data ------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def clapnq() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """ClapNQ-dev passages and questions (``gold_doc_ids`` name passages by ``_id``)."""
    folder = shared_data_dir() / "clapnq-dev"
    if not (folder / "questions.jsonl").is_file():
        raise SystemExit(f"{folder} not found: set RAG_SHARED_DATA to the folder holding clapnq-dev/")
    return read_jsonl(folder / "corpus.jsonl"), read_jsonl(folder / "questions.jsonl")


def passage_file(passage: dict[str, Any]) -> tuple[str, bytes]:
    """One passage as the text file a user would upload; the file name carries the passage id."""
    return f"{passage['_id']}.txt", f"{passage.get('title', '')}\n\n{passage['text']}\n".encode()


def create_collection(client: httpx.Client, name: str) -> None:
    response = client.post("/v1/collections", json={"name": name})
    if response.status_code not in (201, 409):
        raise RuntimeError(f"creating {name}: {response.status_code} {response.text}")


def upload_files(client: httpx.Client, collection: str, files: Sequence[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Batch uploads of 20 files (the default RAG_MAX_FILES_PER_REQUEST)."""
    documents: list[dict[str, Any]] = []
    for start in range(0, len(files), 20):
        batch = [("files", (name, data, "text/plain")) for name, data in files[start : start + 20]]
        response = client.post(f"/v1/collections/{collection}/documents/batch", files=batch)
        if response.status_code != 202:
            raise RuntimeError(f"upload: {response.status_code} {response.text[:500]}")
        documents.extend(response.json())
    return documents


def status_counts(client: httpx.Client, collection: str) -> dict[str, int]:
    counts = {}
    for status in ("queued", "processing", "indexed", "failed"):
        response = client.get(f"/v1/collections/{collection}/documents", params={"status": status, "limit": 1})
        response.raise_for_status()
        counts[status] = response.json()["total"]
    return counts


def wait_indexed(client: httpx.Client, collection: str, timeout: float = 900.0) -> dict[str, int]:
    """Until nothing is queued or processing; returns the final status counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = status_counts(client, collection)
        if counts["queued"] == 0 and counts["processing"] == 0:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"{collection} still not indexed after {timeout:.0f} s: {counts}")
        time.sleep(0.5)


def all_documents(client: httpx.Client, collection: str) -> tuple[list[dict[str, Any]], int]:
    """Every document of a collection (paged by 500) and the total the API reports."""
    items: list[dict[str, Any]] = []
    total = 0
    while True:
        response = client.get(f"/v1/collections/{collection}/documents", params={"limit": 500, "offset": len(items)})
        response.raise_for_status()
        page = response.json()
        total = page["total"]
        items.extend(page["items"])
        if not page["items"] or len(items) >= total:
            return items, total


# --- report ----------------------------------------------------------------------------------


def ms(summary: dict[str, float], key: str) -> float:
    """A figure of ``summary_ms`` that may be absent (no samples)."""
    return summary.get(key, float("nan"))
