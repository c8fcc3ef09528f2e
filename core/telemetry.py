"""Structured logs: one JSON object per line, with whatever ``extra=`` fields the caller attached.

``REQUEST_ID`` is set by the API middleware while a request is served, so every line logged for it
(services included, not only the request line) carries the same ``request_id``. With tracing on, a line
logged inside a span also carries its ``trace_id`` and ``span_id``, to jump from a log line to its trace.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from core.redaction import redact_text

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Fields whose values the server generates itself: the chunk ids of every retrieval stage, query and document
# ids. They hold no personal data and a digit run inside one can look like a card number; a query's line carries
# hundreds of them, and running the five redaction patterns over each took a fifth of a query's CPU under load
# (py-spy of bench/load_test.py). Chosen by field, not by shape: a client can send an id-shaped string.
SERVER_ID_FIELDS = frozenset({"retrieval", "query_id", "document_id"})


def scrub(value: Any) -> Any:
    """Redact every string inside a log field, however nested, except under ``SERVER_ID_FIELDS``."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: v if k in SERVER_ID_FIELDS else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: bool = True) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            body["request_id"] = request_id
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        if self.redact:
            body = scrub(body)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:  # added after scrubbing: a hex id can hold a digit run that looks like a card number
            body["trace_id"] = trace.format_trace_id(span.trace_id)
            body["span_id"] = trace.format_span_id(span.span_id)
        return json.dumps(body, default=str)


def configure_logging(level: str = "INFO", redact: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redact=redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "sentence_transformers", "celery", "kombu"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
