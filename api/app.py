"""The FastAPI app factory. The lifespan builds services once and keeps them on ``app.state``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.limits import RateLimits
from api.middleware import RequestContextMiddleware
from api.routes import admin, collections, conversations, documents, health, ops, query
from core.config import Settings
from core.errors import RagError, RateLimited
from core.heap import freeze_long_lived, thaw
from core.tracing import configure_tracing
from workers.app import ingest_enqueuer, make_celery, reindex_enqueuer
from workers.embedded import EmbeddedWorker
from workers.recovery import requeue_unfinished
from workers.services import Services

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, run_worker: bool | None = None) -> FastAPI:
    """``run_worker`` defaults to "no broker configured": the embedded worker runs in this process."""
    settings = settings or Settings()
    in_process = settings.broker_url is None if run_worker is None else run_worker
    configure_tracing(settings, "hybrid-rag-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        celery = make_celery(settings)
        celery.services = services  # type: ignore[attr-defined]
        app.state.services = services
        app.state.enqueue = ingest_enqueuer(celery, settings.ingest_batch_documents)
        app.state.enqueue_reindex = reindex_enqueuer(celery)
        app.state.limits = RateLimits(settings)
        services.db  # noqa: B018 - create the schema before the first request
        if settings.reranker_model:
            services.reranker  # noqa: B018 - a configured reranker that cannot load fails the start
        worker = EmbeddedWorker(celery) if in_process else None
        if worker is not None:
            worker.start()
            requeue_unfinished(services, celery)
        freeze_long_lived()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
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
    async def rag_error(_: Request, exc: RagError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after_s)}
        elif exc.status_code == 503:
            headers = {"Retry-After": "5"}
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error", extra={"incident": incident, "path": request.url.path})
        return JSONResponse(
            {"detail": f"Internal error (incident {incident}); the server log has the details."},
            status_code=500,
        )

    for module in (health, ops, collections, documents, query, conversations, admin):
        app.include_router(module.router)
    app.add_middleware(RequestContextMiddleware)
    return app
