"""A real uvicorn server: after a 4xx or a 500 the client's connection stays open for its next request."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from core.config import Settings
from tests.conftest import free_port


def failing_app(data_dir: Path) -> FastAPI:
    app = create_app(Settings(data_dir=data_dir, llm_backend="none", api_key="keep-alive-key", _env_file=None))

    @app.get("/test-only/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug the handlers did not foresee")

    return app


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    number = free_port()
    config = uvicorn.Config(failing_app(tmp_path_factory.mktemp("keepalive") / "data"), port=number, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    yield number
    server.should_exit = True
    thread.join(timeout=30)


@pytest.mark.parametrize(
    "method, path, headers, status",
    [
        ("GET", "/test-only/boom", {"Authorization": "Bearer keep-alive-key"}, 500),
        ("GET", "/v1/collections", {}, 401),
        ("GET", "/v1/collections/none/documents", {"Authorization": "Bearer keep-alive-key"}, 404),
        ("GET", "/v1/collections/none/documents?offset=-1", {"Authorization": "Bearer keep-alive-key"}, 422),
        ("GET", "/no/such/route", {}, 404),
    ],
)
def test_the_connection_survives_an_error(port: int, method: str, path: str, headers: dict, status: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, headers=headers)
    failed = connection.getresponse()
    body = failed.read()
    assert failed.status == status, body
    assert b'"detail"' in body
    socket_before = connection.sock
    assert socket_before is not None, "the server closed the connection after the error"
    connection.request("GET", "/health")
    healthy = connection.getresponse()
    healthy.read()
    assert healthy.status == 200
    assert connection.sock is socket_before
    connection.close()
