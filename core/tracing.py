"""OpenTelemetry traces, sent over OTLP/HTTP when an endpoint is configured and off otherwise.

Off, nothing is installed and the SDK is never imported: :func:`span` runs on the API's no-op tracer, so
instrumented code costs a context-manager call. On, one ``TracerProvider`` per process becomes the global
one. FastAPI then traces each request by itself (its native telemetry follows the global provider), the
contrib instrumentations trace Celery (publish and run, context carried in the message headers) and every
SQLAlchemy engine created afterwards, and the query path adds its own spans with the retrieval ids.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from core.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

T = TypeVar("T")

TRACER_NAME = "hybrid_rag"
MAX_SPAN_IDS = 20
"""Ids kept per retrieval stage on a span; the query log row keeps every one."""
STANDARD_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACES_PATH = "/v1/traces"


def tracing_enabled(settings: Settings) -> bool:
    """``RAG_OTEL_ENDPOINT`` or the standard OTLP endpoint variables switch it on; the standard
    ``OTEL_SDK_DISABLED=true`` and ``OTEL_TRACES_EXPORTER=none`` switch it off whatever the endpoint."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(settings.otel_endpoint) or any(os.environ.get(name) for name in STANDARD_ENDPOINTS)


def traces_url(endpoint: str) -> str:
    """A collector's base URL (like ``OTEL_EXPORTER_OTLP_ENDPOINT``) gets the traces path; a full one is kept."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def configure_tracing(
    settings: Settings, service_name: str, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Install tracing for this process once; None when it is off.

    Idempotent: the API and its embedded worker share one process and one provider, so a later call returns
    the provider already installed. ``exporter`` replaces OTLP and switches tracing on by itself (tests pass
    an in-memory one). Engines created before the first call are not traced: call it before building services.
    """
    if exporter is None and not tracing_enabled(settings):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Without RAG_OTEL_ENDPOINT the exporter reads the standard variables itself (endpoint, headers, TLS).
        exporter = OTLPSpanExporter(endpoint=traces_url(settings.otel_endpoint) if settings.otel_endpoint else None)
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _instrument_libraries(provider)
    return provider


def _instrument_libraries(provider: TracerProvider) -> None:
    """Process-wide: Celery through its signals, SQLAlchemy by wrapping ``create_engine``.

    The SQLAlchemy instrumentation declares ``sqlalchemy<2.1`` and would refuse 2.1, whose engine events and
    ``create_engine`` it hooks are unchanged: tests/integration/test_tracing.py checks its spans on our version.
    It also wraps ``sqlalchemy.ext.asyncio``, which on 2.1 imports only with ``greenlet`` installed.
    """
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    celery, sql = CeleryInstrumentor(), SQLAlchemyInstrumentor()
    if not celery.is_instrumented_by_opentelemetry:
        celery.instrument(tracer_provider=provider)
    if not sql.is_instrumented_by_opentelemetry:
        sql.instrument(tracer_provider=provider, skip_dep_check=True)


def prepare_celery_tasks(tasks: Iterable[object]) -> None:
    """Give each task the dict where Celery's instrumentation keeps its running spans, before any worker runs it.

    The instrumentation creates that dict on a task's first run (check, then set: not atomic). When two worker
    threads start the first two runs at once, each creates one, the second replaces the first, and the first
    run's span is lost: its postrun finds nothing, the span ends without its task name and its context is
    detached later in another thread. Made up front, the dict is only read and updated by key, which is safe.
    """
    from opentelemetry.instrumentation.celery.utils import CTX_KEY

    for task in tasks:
        if getattr(task, CTX_KEY, None) is None:
            setattr(task, CTX_KEY, {})


def _clean(attributes: dict[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {key: value for key, value in attributes.items() if value is not None}


def span(name: str, **attributes: AttributeValue | None) -> AbstractContextManager[Span]:
    """A child of the current span, current while the block runs; None-valued attributes are left out.

    Attribute names carry dots, so callers unpack a dict: ``span("rag.query", **{"rag.mode": mode})``.
    """
    return trace.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=_clean(attributes))


def start_span(name: str, **attributes: AttributeValue | None) -> Span:
    """A child of the current span that the caller ends: for work spread over a generator's steps."""
    return trace.get_tracer(TRACER_NAME).start_span(name, attributes=_clean(attributes))


def recording_span() -> Span | None:
    """The current span if it records, so callers build attributes only when they will be kept."""
    current = trace.get_current_span()
    return current if current.is_recording() else None


def flat_attributes(fields: Mapping[str, Any], prefix: str = "rag.") -> dict[str, AttributeValue]:
    """Structured-log fields as span attributes, so a span carries what its log line carries.

    Mappings are flattened with dots; lists of strings (ids) keep their first ``MAX_SPAN_IDS`` items plus
    a ``.count``; None and lists of anything else (event dicts) are left out.
    """
    flat: dict[str, AttributeValue] = {}
    for key, value in fields.items():
        name = prefix + key
        if isinstance(value, Mapping):
            flat.update(flat_attributes(value, name + "."))
        elif isinstance(value, str | bool | int | float):
            flat[name] = value
        elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            flat[name] = list(value[:MAX_SPAN_IDS])
            flat[name + ".count"] = len(value)
    return flat


def traced_stream(name: str, start: Callable[[], Iterator[T]], **attributes: AttributeValue | None) -> Iterator[T]:
    """A span over a stream: ``start`` (the eager part, whose errors surface before the first step) runs
    under it, then :func:`traced_steps` keeps it current around each step and ends it with the stream."""
    owner = start_span(name, **attributes)
    try:
        with trace.use_span(owner):
            steps = start()
    except BaseException:
        owner.end()
        raise
    return traced_steps(steps, owner)


def traced_steps(steps: Iterator[T], owner: Span) -> Iterator[T]:
    """Make ``owner`` current around each step of ``steps`` and end it when they end or are closed.

    A streamed answer is consumed one step at a time from pool threads (SSE), each step in a fresh copy of
    the request's context, so no context can stay attached across its yields.
    """
    try:
        while True:
            with trace.use_span(owner):
                try:
                    item = next(steps)
                except StopIteration:
                    return
            yield item
    finally:
        with trace.use_span(owner, end_on_exit=True):
            close = getattr(steps, "close", None)
            if close is not None:
                close()
