"""OpenTelemetry tracing on the real app (embedded defaults, in-process worker), spans caught in memory.

``configure_tracing`` installs the provider exactly as in production (batch processor, FastAPI's native
request spans, the Celery and SQLAlchemy instrumentations); only the OTLP exporter is swapped for the SDK's
in-memory one. The global provider can be set once per process, so the fixture puts the process back as
it found it: instrumentations removed, provider shut down, globals reset.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_trace_globals
from opentelemetry.trace import SpanKind

from api.app import create_app
from core.config import Settings
from core.telemetry import JsonFormatter
from core.tracing import MAX_SPAN_IDS, STANDARD_ENDPOINTS, configure_tracing, span, traces_url, tracing_enabled
from tests.e2e.helpers import wait_for_status

REPO = Path(__file__).resolve().parents[2]
QUERY_ROUTE = "/v1/collections/{name}/query"
DOCUMENTS = {
    "owls.txt": "Barn owls hunt small mammals at night, finding them by sound alone with their acute hearing.",
    "bees.txt": "Honey bees tell their hive mates where flowers are with a waggle dance on the comb.",
    "tides.txt": "Ocean tides rise and fall twice a day, pulled by the gravity of the moon and the sun.",
}


@pytest.fixture(autouse=True)
def no_otlp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector configured on the machine running the tests must not switch tracing on here."""
    for name in (*STANDARD_ENDPOINTS, "RAG_OTEL_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def traced(settings: Settings) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    assert not isinstance(trace.get_tracer_provider(), TracerProvider), "a tracer provider leaked from elsewhere"
    exporter = InMemorySpanExporter()
    provider = configure_tracing(settings, "hybrid-rag-test", exporter=exporter)
    assert isinstance(provider, TracerProvider) and trace.get_tracer_provider() is provider
    try:
        yield provider, exporter
    finally:
        CeleryInstrumentor().uninstrument()
        SQLAlchemyInstrumentor().uninstrument()
        provider.shutdown()
        reset_trace_globals()


def index_corpus(client: TestClient) -> list[str]:
    assert client.post("/v1/collections", json={"name": "nature"}).status_code == 201
    ids = []
    for name, text in DOCUMENTS.items():
        response = client.post("/v1/collections/nature/documents", files={"file": (name, text.encode())})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    for document_id in ids:
        assert wait_for_status(client, document_id)["status"] == "indexed"
    return ids


def ask(client: TestClient) -> dict:
    body = {"query": "How do owls find their prey at night?", "top_k": 2, "generate": False}
    response = client.post("/v1/collections/nature/query", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def finished_spans(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    ready: Callable[[Sequence[ReadableSpan]], bool],
    timeout: float = 60.0,
) -> Sequence[ReadableSpan]:
    """Worker spans end a moment after the document row says ``indexed``: flush until they are all in."""
    deadline = time.monotonic() + timeout
    while True:
        provider.force_flush()
        spans = exporter.get_finished_spans()
        if ready(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ancestors(spans: Sequence[ReadableSpan], child: ReadableSpan) -> list[ReadableSpan]:
    by_id = {s.context.span_id: s for s in spans}
    chain = []
    while child.parent is not None and child.parent.span_id in by_id:
        child = by_id[child.parent.span_id]
        chain.append(child)
    return chain


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def parent_of(spans: Sequence[ReadableSpan], child: ReadableSpan) -> ReadableSpan:
    assert child.parent is not None, f"{child.name} has no parent"
    return next(s for s in spans if s.context.span_id == child.parent.span_id)


def capture_json_logs(logger_name: str) -> tuple[io.StringIO, logging.Handler]:
    """The production formatter on a stream handler: it formats at emit time, inside the caller's span."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return stream, handler


def test_a_query_is_traced_from_the_request_to_sql_with_its_retrieval_ids(
    settings: Settings, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    stream, handler = capture_json_logs("generation.query_service")
    try:
        with TestClient(create_app(settings)) as client:
            document_ids = index_corpus(client)
            body = ask(client)
            spans = finished_spans(
                provider, exporter, lambda found: len(named(found, "run/rag.ingest_document")) == len(DOCUMENTS)
            )
    finally:
        logging.getLogger("generation.query_service").removeHandler(handler)

    # HTTP request span -> (FastAPI's endpoint span) -> query span -> retrieve span -> one span per stage.
    [query] = [s for s in named(spans, "rag.query") if s.attributes["rag.query_id"] == body["query_id"]]
    server = [s for s in ancestors(spans, query) if s.kind == SpanKind.SERVER]
    assert [s.attributes["http.route"] for s in server] == [QUERY_ROUTE]
    assert server[0].attributes["http.response.status_code"] == 200
    [retrieve] = [s for s in named(spans, "rag.retrieve") if parent_of(spans, s) is query]
    stages = {s.name for s in children(spans, retrieve)}
    # "payloads" reads the full payloads of kept hits the vector search alone found, when there are such.
    assert stages - {"rag.retrieve.payloads"} == {
        f"rag.retrieve.{stage}" for stage in ("embed", "vector", "keyword", "fuse")
    }
    assert {s.context.trace_id for s in (query, retrieve, *server)} == {server[0].context.trace_id}

    # The retrieval ids the response returned, stage by stage, on both the query and the retrieve span.
    for stage, ids in body["retrieval"].items():
        for owner in (query, retrieve):
            assert list(owner.attributes[f"rag.retrieval.{stage}"]) == ids[:MAX_SPAN_IDS], (owner.name, stage)
            assert owner.attributes[f"rag.retrieval.{stage}.count"] == len(ids)
    assert body["retrieval"]["fused"] and body["retrieval"]["vector"] and body["retrieval"]["keyword"]
    for owner in (query, retrieve):
        assert owner.attributes["rag.collection"] == "nature"
        assert owner.attributes["rag.mode"] == "hybrid" and owner.attributes["rag.top_k"] == 2
    assert query.attributes["rag.index_version"] == retrieve.attributes["rag.index_version"] == body["index_version"]
    assert query.attributes["rag.cache.hit"] is False
    assert not named(spans, "rag.generate")  # generate: false never reaches the LLM

    # SQL under the query: the collection lookup and the query-log insert.
    sql = [s for s in spans if query in ancestors(spans, s) and s.attributes.get("db.system") == "sqlite"]
    statements = " ".join(str(s.attributes.get("db.statement", "")) for s in sql)
    assert "SELECT" in statements and "INSERT INTO query_logs" in statements

    # Celery: each upload's publish span sits in its request's trace and parents the task run in the worker.
    runs = named(spans, "run/rag.ingest_document")
    assert len(runs) == len(DOCUMENTS)
    for run in runs:
        publish = parent_of(spans, run)
        assert publish.name == "apply_async/rag.ingest_document" and publish.kind == SpanKind.PRODUCER
        [upload] = [s for s in ancestors(spans, publish) if s.kind == SpanKind.SERVER]
        assert upload.attributes["http.route"] == "/v1/collections/{name}/documents"
        assert any(s.attributes.get("db.system") == "sqlite" for s in spans if run in ancestors(spans, s))
    assert {run.attributes.get("celery.task_name") for run in runs} == {"rag.ingest_document"}
    assert len(document_ids) == len(runs)

    # The query's log line names the query's trace.
    [line] = [json.loads(raw) for raw in stream.getvalue().splitlines() if json.loads(raw)["msg"] == "query"]
    assert line["query_id"] == body["query_id"]
    assert line["trace_id"] == trace.format_trace_id(query.context.trace_id)
    assert line["span_id"] == trace.format_span_id(query.context.span_id)


def test_the_llm_call_is_a_child_span_whole_and_streamed(
    settings: Settings, traced: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded llama.cpp model answers (generative mode); a stream is consumed step by step from pool
    threads (SSE). The LLM call is a span of its own under the answer step, which follows retrieval and the
    evidence step under the query."""
    provider, exporter = traced
    answering = settings.model_copy(update={"llm_backend": "llama_cpp", "llm_max_tokens": 16})
    question = {"query": "How do owls find their prey at night?", "top_k": 2, "answer_mode": "generative"}
    with caplog.at_level(logging.WARNING, logger="opentelemetry"), TestClient(create_app(answering)) as client:
        index_corpus(client)
        whole = client.post("/v1/collections/nature/query", json=question)
        assert whole.status_code == 200, whole.text
        with client.stream("POST", "/v1/collections/nature/query", json={**question, "stream": True}) as r:
            assert r.status_code == 200
            events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    streamed = events[-1]
    assert streamed["type"] == "done"
    spans = finished_spans(provider, exporter, lambda found: len(named(found, "rag.generate")) == 2)
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")]

    for body, timing in ((whole.json(), "generate"), (streamed, "ttft")):
        assert body["answer_mode"] in ("generative", "extractive") and not body["abstained"]
        [query] = [s for s in named(spans, "rag.query") if s.attributes["rag.query_id"] == body["query_id"]]
        server = [s.attributes["http.route"] for s in ancestors(spans, query) if s.kind == SpanKind.SERVER]
        assert server == [QUERY_ROUTE]
        retrieve, evidence, answer = sorted(
            (s for s in children(spans, query) if s.name.startswith("rag.")), key=lambda s: s.start_time
        )
        assert (retrieve.name, evidence.name, answer.name) == ("rag.retrieve", "rag.evidence", "rag.answer")
        assert evidence.start_time >= retrieve.end_time and answer.start_time >= evidence.end_time
        [generate] = [s for s in children(spans, answer) if s.name == "rag.generate"]
        assert generate.attributes["rag.llm.backend"] == body["backend"] == "llama_cpp"
        assert generate.attributes["rag.llm.model"] == body["model"]
        assert generate.attributes["rag.usage.prompt_tokens"] == body["usage"]["prompt_tokens"] > 0
        assert generate.attributes["rag.usage.completion_tokens"] == body["usage"]["completion_tokens"] > 0
        assert generate.attributes[f"rag.timings_ms.{timing}"] == body["timings_ms"][timing]
        assert answer.attributes["rag.answer.mode"] == body["answer_mode"]
        assert query.attributes["rag.usage.completion_tokens"] == body["usage"]["completion_tokens"]
        assert list(query.attributes["rag.retrieval.fused"]) == body["retrieval"]["fused"][:MAX_SPAN_IDS]


def test_tracing_off_installs_nothing_and_records_nothing(settings: Settings) -> None:
    assert configure_tracing(settings, "hybrid-rag-test") is None
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    stream, handler = capture_json_logs("generation.query_service")
    try:
        with TestClient(create_app(settings)) as client:
            index_corpus(client)
            body = ask(client)
            with span("rag.probe", **{"rag.anything": 1}) as probe:
                assert not probe.is_recording() and not probe.get_span_context().is_valid
    finally:
        logging.getLogger("generation.query_service").removeHandler(handler)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    [line] = [json.loads(raw) for raw in stream.getvalue().splitlines() if json.loads(raw)["msg"] == "query"]
    assert line["query_id"] == body["query_id"] and "trace_id" not in line and "span_id" not in line


def test_tracing_off_imports_no_sdk(tmp_path: Path) -> None:
    """In a fresh interpreter: building the app with no endpoint loads neither the SDK nor an exporter."""
    script = (
        "import sys\n"
        "from api.app import create_app\n"
        "from core.config import Settings\n"
        f"create_app(Settings(data_dir={str(tmp_path)!r}, llm_backend='none', _env_file=None))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter',"
        " 'opentelemetry.instrumentation'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (*STANDARD_ENDPOINTS, "RAG_OTEL_ENDPOINT")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("setting", "environment", "enabled"),
    [
        (None, {}, False),
        ("http://collector:4318", {}, True),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ("http://collector:4318", {"OTEL_SDK_DISABLED": "true"}, False),
        ("http://collector:4318", {"OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_what_switches_tracing_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, setting: str | None, environment: dict, enabled: bool
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert tracing_enabled(settings.model_copy(update={"otel_endpoint": setting})) is enabled


def test_a_collector_base_url_gets_the_traces_path() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://otel.example/v1/traces") == "https://otel.example/v1/traces"


def test_every_task_holds_the_instrumentation_span_dict_before_any_worker_runs_it(tmp_path: Path) -> None:
    """Celery's instrumentation creates that dict on a task's first run without a lock: two worker threads
    starting the first two runs at once each made one and one run's span lost its task name."""
    from opentelemetry.instrumentation.celery.utils import CTX_KEY

    from workers.app import make_celery

    app = make_celery(Settings(data_dir=tmp_path))
    tasks = [task for name, task in app.tasks.items() if name.startswith("rag.")]
    assert tasks and all(isinstance(getattr(task, CTX_KEY, None), dict) for task in tasks)
