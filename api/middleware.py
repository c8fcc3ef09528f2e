"""Per-request context: a request id, one structured log line and one latency observation per request.

Pure ASGI rather than ``BaseHTTPMiddleware`` so response bodies pass through untouched: an SSE stream is
forwarded message by message, never buffered, and its duration is measured to the last byte.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import REQUEST_LATENCY
from core.telemetry import REQUEST_ID

log = logging.getLogger("api.request")
error_log = logging.getLogger("api.app")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from a proxy or client are echoed into logs and headers: only short, plain tokens are trusted.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def request_id_from(headers: Headers) -> str:
    incoming = headers.get(REQUEST_ID_HEADER, "")
    return incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex


def route_label(scope: Scope) -> str:
    """The matched route's template (``/v1/documents/{document_id}``); raw paths would grow without bound."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


def method_label(method: str) -> str:
    return method if method in _METHODS else "OTHER"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope))
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500
        first_byte_s: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, first_byte_s
            if message["type"] == "http.response.start":
                status = message["status"]
                first_byte_s = time.perf_counter() - start
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_with_id)
            failed = False
        finally:
            duration_s = time.perf_counter() - start
            method, route = method_label(scope["method"]), route_label(scope)
            REQUEST_LATENCY.labels(method, route, str(status)).observe(duration_s)
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(duration_s * 1000, 2),
                    "first_byte_ms": None if first_byte_s is None else round(first_byte_s * 1000, 2),
                    "request_id": request_id,
                },
            )
            # On an unhandled error the id stays set: the app's 500 handler runs next in this same task
            # and its log line should carry it too.
            if not failed:
                REQUEST_ID.reset(token)


class UnexpectedErrorMiddleware:
    """Turns an unhandled exception into the documented 500 body (with an incident id; details go to the
    log only) without re-raising, so the connection stays usable. A response already under way (a stream)
    cannot be replaced: that error is re-raised and the server ends the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            incident = uuid.uuid4().hex[:12]
            error_log.exception("unhandled error", extra={"incident": incident, "path": scope["path"]})
            body = json.dumps({"detail": f"Internal error (incident {incident}); the server log has the details."})
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})


class UrlGuardMiddleware:
    """Refuses a URL whose path or query holds a NUL character (``%00``) with the documented 422 body.

    One rule at the edge for every path and query parameter: PostgreSQL cannot take NUL in a text value,
    so such an id or filter would otherwise reach the database and fail there as a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and has_nul(scope):
            body = json.dumps({"detail": "The URL contains a NUL character (%00), which no name or id may hold."})
            await send(
                {
                    "type": "http.response.start",
                    "status": 422,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)


def has_nul(scope: Scope) -> bool:
    query = scope.get("query_string", b"").lower()
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query
