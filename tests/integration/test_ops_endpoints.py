"""/metrics, /ready and the request-context middleware on the real app (embedded defaults, no LLM).

The app is wired here the way api/app.py wires it (ops router + ``RequestContextMiddleware``), skipping
whichever part the factory already did, so this test proves the wiring before and after it lands there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import anyio
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message, Receive, Scope, Send

from api.app import create_app
from api.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from api.routes import ops
from core.config import Settings
from core.telemetry import REQUEST_ID, JsonFormatter
from tests.services import missing_service


def wired(settings: Settings) -> FastAPI:
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/ready" for route in app.routes):
        app.include_router(ops.router)
    if not any(m.cls is RequestContextMiddleware for m in app.user_middleware):
        app.add_middleware(RequestContextMiddleware)
    return app


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(wired(settings)) as test_client:
        yield test_client


def metric_value(body: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_metrics_expose_request_latency_by_route_template(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/v1/documents/0123456789abcdef").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    count = "rag_http_request_duration_seconds_count"
    assert metric_value(body, count, method="GET", route="/health", status="200") >= 1
    assert metric_value(body, count, method="GET", route="/v1/documents/{document_id}", status="404") >= 1
    assert metric_value(body, count, route="unmatched", status="404") >= 1
    assert 'route="/no/such/path"' not in body
    assert metric_value(body, "rag_ingest_queue_depth", status="queued") == 0
    assert metric_value(body, "rag_model_info", component="embedding", model="all-MiniLM-L6-v2") == 1


def test_ready_waits_for_the_warm_up_then_reports_every_component(client: TestClient) -> None:
    warmup = client.app.state.warmup  # type: ignore[attr-defined]
    if not warmup.done.is_set():
        warming = client.get("/ready")
        assert warming.status_code == 503 or warmup.done.is_set()
    assert warmup.done.wait(120)
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    components = body["components"]
    assert set(components) == {"warmup", "database", "vector_store", "keyword_index", "broker", "llm"}
    assert components["warmup"]["status"] == "ok" and warmup.errors == []
    assert components["database"]["status"] == "ok"
    assert components["vector_store"]["status"] == "ok"
    assert components["keyword_index"]["status"] == "ok"
    assert components["broker"] == {"status": "ok", "detail": "embedded (memory://, worker in this process)"}
    assert components["llm"]["status"] == "disabled"


def test_ready_is_503_naming_what_is_down(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"broker_url": "redis://127.0.0.1:1/0", "llm_backend": "openai", "llm_base_url": "http://127.0.0.1:1/v1"}
    )
    with TestClient(wired(broken)) as client:
        client.app.state.warmup.done.wait(120)  # type: ignore[attr-defined]
        response = client.get("/ready")
    assert response.status_code == 503
    components = response.json()["components"]
    assert components["broker"]["status"] == "error"
    assert components["llm"]["status"] == "error"
    assert components["database"]["status"] == "ok"


def test_ready_pings_a_real_redis_broker(settings: Settings) -> None:
    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis not reachable on 127.0.0.1:6379 ({exc})")
    with TestClient(wired(settings.model_copy(update={"broker_url": url}))) as client:
        client.app.state.warmup.done.wait(120)  # type: ignore[attr-defined]
        response = client.get("/ready")
    assert response.json()["components"]["broker"] == {"status": "ok", "detail": "redis"}


def test_request_id_is_echoed_or_generated(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="api.request"):
        echoed = client.get("/health", headers={REQUEST_ID_HEADER: "trace-42.a"})
        replaced = client.get("/health", headers={REQUEST_ID_HEADER: "<script>" + "x" * 200})
        fresh = client.get("/health")
    assert echoed.headers[REQUEST_ID_HEADER] == "trace-42.a"
    assert len(replaced.headers[REQUEST_ID_HEADER]) == 32
    assert len(fresh.headers[REQUEST_ID_HEADER]) == 32
    assert fresh.headers[REQUEST_ID_HEADER] != replaced.headers[REQUEST_ID_HEADER]
    lines = [r for r in caplog.records if r.name == "api.request"]
    assert len(lines) == 3
    first = lines[0]
    assert (first.method, first.route, first.status, first.request_id) == ("GET", "/health", 200, "trace-42.a")
    assert first.duration_ms >= 0
    line = json.loads(JsonFormatter().format(first))
    assert {"method", "route", "status", "duration_ms", "request_id"} <= set(line)


class JsonLines(logging.Handler):
    """Formats at emit time, as the production stderr handler does (the request id is read then)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_an_unhandled_error_is_logged_as_500_under_the_request_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = wired(settings)

    def boom() -> None:
        raise RuntimeError("broken on purpose")

    app.add_api_route("/boom", boom)
    handler, root = JsonLines(), logging.getLogger()
    root.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO), TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/boom", headers={REQUEST_ID_HEADER: "req-500"})
    finally:
        root.removeHandler(handler)
    assert response.status_code == 500
    request_line = next(line for line in handler.lines if line["logger"] == "api.request")
    assert (request_line["route"], request_line["status"], request_line["request_id"]) == ("/boom", 500, "req-500")
    error_line = next(line for line in handler.lines if line["msg"] == "unhandled error")
    assert error_line["request_id"] == "req-500"


def test_log_lines_inside_a_request_carry_its_id() -> None:
    record = logging.LogRecord("ingest", logging.INFO, __file__, 1, "step done", (), None)
    token = REQUEST_ID.set("req-7")
    try:
        assert json.loads(JsonFormatter().format(record))["request_id"] == "req-7"
    finally:
        REQUEST_ID.reset(token)
    assert "request_id" not in json.loads(JsonFormatter().format(record))


def test_streamed_bodies_pass_through_unbuffered() -> None:
    """The first chunk must reach the server before the app produces the second (an SSE stream)."""
    first_sent = anyio.Event()

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await first_sent.wait()
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})

    sent: list[Message] = []

    async def server_send(message: Message) -> None:
        sent.append(message)
        if message.get("body") == b"data: 1\n\n":
            first_sent.set()

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [], "query_string": b""}

    async def run() -> None:
        with anyio.fail_after(10):  # a buffering middleware would wait here forever
            await RequestContextMiddleware(streaming_app)(scope, receive, server_send)

    anyio.run(run)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]
    assert any(name == REQUEST_ID_HEADER.lower().encode() for name, _ in sent[0]["headers"])
