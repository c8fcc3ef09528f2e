"""The FastAPI app factory. The lifespan builds services once and keeps them on ``app.state``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.console.site import error_page, mount_console, wants_console_error
from api.limits import RateLimits
from api.mcp_server import McpContext, McpEndpoint, build_mcp_server, http_transport
from api.middleware import RequestContextMiddleware, UnexpectedErrorMiddleware, UrlGuardMiddleware
from api.routes import admin, collections, conversations, documents, health, openai, ops, query
from api.schemas import ErrorOut
from core.config import Settings
from core.errors import RagError, RateLimited
from core.heap import freeze_long_lived, thaw
from core.jsonsafe import repair_text
from core.tracing import configure_tracing
from runtime.queue import open_queue
from runtime.services import Services
from runtime.warmup import start_warmup

WARMUP_CLOSE_WAIT_S = 120.0


def create_app(settings: Settings | None = None, *, run_worker: bool | None = None) -> FastAPI:
    """``run_worker`` defaults to "no broker configured": the embedded worker runs in this process."""
    settings = settings or Settings()
    in_process = settings.broker_url is None if run_worker is None else run_worker
    configure_tracing(settings, "hybrid-rag-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        queue = open_queue(services, in_process)
        app.state.services = services
        app.state.queue = queue
        app.state.limits = RateLimits(settings)
        services.db  # noqa: B018 - create the schema before the first request
        if settings.reranker_model:
            services.reranker  # noqa: B018 - a configured reranker that cannot load fails the start
        queue.start()
        app.state.warmup = start_warmup(services)
        mcp = build_mcp_server(McpContext(services, app.state.limits, local=None))
        app.state.mcp_http = http_transport(mcp, settings.host)
        freeze_long_lived()
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            queue.stop()
            # The warm-up uses the stores: closing them under it would let it open them again.
            app.state.warmup.done.wait(WARMUP_CLOSE_WAIT_S)
            services.close()
            thaw()

    app = FastAPI(
        title="hybrid-rag",
        version="0.1.0",
        description="Upload documents, query them with hybrid retrieval, get cited answers.",
        lifespan=lifespan,
        # FastAPI traces requests through the provider configure_tracing installed; exporting from the
        # OTEL_* variables itself as well would send every span twice.
        telemetry={"auto_configure": False},
    )

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> Response:
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after_s)}
        elif exc.status_code == 503:
            headers = {"Retry-After": "5"}
        return answer_error(request, exc.status_code, exc.message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [field_error(e) for e in exc.errors()]
        summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:3])
        return answer_error(request, 422, f"Invalid request: {summary}"[:1000], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return answer_error(request, exc.status_code, str(exc.detail), headers=exc.headers)

    app.include_router(health.router)
    app.include_router(ops.router)
    for module in (collections, documents, query, conversations, admin):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    app.include_router(openai.router)  # its own error shape (OpenAI's), see api.routes.openai
    app.add_route("/mcp", McpEndpoint(), include_in_schema=False)  # MCP over streamable HTTP, same keys
    # Innermost layer (added first): an unexpected error becomes a 500 there and is not re-raised, so the
    # server keeps the connection open (Starlette's own handler for ``Exception`` re-raises to the server,
    # which then closes the connection and the client's next request on it fails).
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(UrlGuardMiddleware)
    app.add_middleware(RequestContextMiddleware)
    mount_console(app, settings)  # its headers middleware goes outermost: 500 pages get the CSP too
    return app


def answer_error(
    request: Request, status: int, detail: str, *, errors: list[dict[str, Any]] | None = None, headers=None
) -> Response:  # type: ignore[no-untyped-def]
    """The web console's pages get their errors as HTML; everything else gets ``ErrorOut``."""
    if wants_console_error(request):
        return error_page(request, status, repair_text(detail), headers)
    return error_response(status, detail, errors=errors, headers=headers)


def error_response(
    status: int, detail: str, *, errors: list[dict[str, Any]] | None = None, headers=None
) -> JSONResponse:  # type: ignore[no-untyped-def]
    """The one body of every 4xx and 5xx: ``ErrorOut`` (``detail``, plus ``errors`` on a 422 from validation)."""
    body: dict[str, Any] = {"detail": repair_text(detail)}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def field_error(error: Any) -> dict[str, Any]:
    """A pydantic error without its input; the location may hold a client's JSON key, so it is repaired."""
    return {
        "loc": [repair_text(p) if isinstance(p, str) else p for p in error.get("loc", ())],
        "msg": repair_text(str(error.get("msg", ""))),
        "type": str(error.get("type", "")),
    }


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "The body could not be parsed (not UTF-8, nested too deep, an integer of over 4,300 digits)",
        401: "Missing, invalid or revoked API key",
        403: "The key's role is too low, or the collection named in the path is outside its scope",
        404: "Not found (also: a record of a collection outside the key's scope)",
        422: "Invalid input",
        429: "Over the per-key rate limit (Retry-After says when to retry)",
        503: "A dependency is unavailable (Retry-After says when to retry)",
    }.items()
}
