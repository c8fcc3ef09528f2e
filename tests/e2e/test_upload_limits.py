"""Uploads are refused before their body is read: keyless, wrong role or scope, declared too large, or
counted too large while streaming; ten keyless clients streaming 200 MB each leave memory and disk flat.

A real uvicorn process (its own TMPDIR, its peak RSS read from /proc) and raw sockets that stream the
body the way a hostile client does: without waiting for the server, until it answers or hangs up.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port

ROOT_KEY = "upload-limits-root-key"
BIG = 200 * 1024 * 1024
CHUNK = 256 * 1024
# What the kernel's socket buffers can hold between a client and a server that stopped reading; a
# client that got this far (and no further) was refused early, not read.
EARLY = 16 * 1024 * 1024
SERVER = """
import uvicorn
from api.app import create_app
uvicorn.run(create_app(), host="127.0.0.1", port={port}, log_config=None, access_log=False)
"""


@dataclass
class Served:
    port: int
    pid: int
    spool: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("upload-limits")
    spool = root / "tmp"
    spool.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(spool),
        "RAG_DATA_DIR": str(root / "data"),
        "RAG_API_KEY": ROOT_KEY,
        "RAG_LLM_BACKEND": "none",
        "RAG_MAX_UPLOAD_MB": "1",
        "RAG_RATE_LIMIT_UPLOAD": "100000/minute",
    }
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(port=port)], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()[-3000:]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    root_headers = {"Authorization": f"Bearer {ROOT_KEY}"}
    assert httpx.post(f"{url}/v1/collections", json={"name": "up"}, headers=root_headers).status_code == 201
    yield Served(port, process.pid, spool)
    process.terminate()
    process.wait(timeout=60)


def mint(server: Served, role: str, collections: list[str] | None = None) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{server.port}/v1/admin/keys",
        json={"name": role, "role": role, "collections": collections},
        headers={"Authorization": f"Bearer {ROOT_KEY}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


@dataclass
class Outcome:
    sent: int
    status: int | None


def stream_upload(port: int, path: str, headers: dict[str, str], total: int, chunked: bool) -> Outcome:
    """Send a multipart upload of ``total`` bytes without waiting; stop when the server answers or closes."""
    boundary = "b0undary"
    preamble = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(preamble) + total}")
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sent = 0
    status = None
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        payload = b"x" * CHUNK
        frame = f"{CHUNK:x}\r\n".encode() + payload + b"\r\n" if chunked else payload
        pending = (f"{len(preamble):x}\r\n".encode() + preamble + b"\r\n") if chunked else preamble
        sock.setblocking(False)
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                break
            if not writable:
                raise AssertionError(f"the server neither read nor answered after {sent} bytes")
            if not pending:
                pending = frame
            written = sock.send(pending)
            pending = pending[written:]
            sent += written
        sock.setblocking(True)
        reply = sock.recv(4096)
        if reply.startswith(b"HTTP/1.1 "):
            status = int(reply[9:12])
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return Outcome(sent, status)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def spooled_bytes(pid: int, spool: Path) -> int:
    """Bytes in files the server holds open under its TMPDIR (spooled uploads are unlinked, so the folder
    listing would not show them)."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(str(spool)):
                total += fd.stat().st_size
        except OSError:
            continue
    return total


def test_ten_keyless_clients_streaming_200_mb_are_refused_without_spooling(server: Served) -> None:
    peak_before = peak_rss(server.pid)
    outcomes: list[Outcome] = []
    spool_peak = 0
    running = threading.Event()
    running.set()

    def watch_spool() -> None:
        nonlocal spool_peak
        while running.is_set():
            spool_peak = max(spool_peak, spooled_bytes(server.pid, server.spool))

    def client(index: int) -> None:
        outcomes.append(stream_upload(server.port, "/v1/collections/up/documents", {}, BIG, chunked=index % 2 == 0))

    watcher = threading.Thread(target=watch_spool)
    watcher.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    running.clear()
    watcher.join()
    assert len(outcomes) == 10
    assert all(o.sent < EARLY for o in outcomes), [o.sent for o in outcomes]
    assert {o.status for o in outcomes} <= {401, None}, outcomes
    assert any(o.status == 401 for o in outcomes), outcomes
    assert spool_peak == 0
    assert peak_rss(server.pid) - peak_before < 64 * 1024 * 1024
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200


@pytest.mark.parametrize(
    "role, collections, path, status",
    [
        ("reader", None, "/v1/collections/up/documents", 403),
        ("writer", ["other"], "/v1/collections/up/documents", 403),
        ("writer", None, "/v1/collections/missing/documents", 404),
    ],
)
def test_wrong_role_scope_or_collection_is_refused_before_the_body(
    server: Served, role: str, collections: list[str] | None, path: str, status: int
) -> None:
    key = mint(server, role, collections)
    outcome = stream_upload(server.port, path, {"Authorization": f"Bearer {key}"}, BIG, chunked=False)
    assert outcome.sent < EARLY and outcome.status in (status, None), outcome


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_writer_streaming_too_much_is_stopped_at_the_limit(server: Served, chunked: bool) -> None:
    """Declared: refused on the header alone. Chunked: counted while streaming, refused past the limit."""
    key = mint(server, "writer")
    outcome = stream_upload(
        server.port, "/v1/collections/up/documents", {"Authorization": f"Bearer {key}"}, BIG, chunked=chunked
    )
    assert outcome.sent < EARLY and outcome.status in (413, None), outcome
    assert spooled_bytes(server.pid, server.spool) == 0
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200


def test_an_upload_within_the_limits_still_works(server: Served) -> None:
    key = mint(server, "writer")
    response = httpx.post(
        f"http://127.0.0.1:{server.port}/v1/collections/up/documents",
        files={"file": ("small.txt", b"A small file well within the limit.")},
        data={"metadata": '{"tags": ["ok"]}', "replace": "true"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == {"tags": ["ok"]}
