"""Administration: API keys, re-index with progress, the query log with its traces, evaluation reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.console import reports
from api.console.forms import api_body, optional_text
from api.console.security import CONSOLE_PREFIX, ConsoleUser, UserDep
from api.console.site import page, see_other
from api.console.svg import bar_chart, histogram
from api.deps import DbDep, IngestDep, SettingsDep
from api.routes import admin as api
from api.routes import collections as api_collections
from api.routes import query as api_query
from api.schemas import KeyIn, ReindexJobOut, as_utc
from core.errors import BadInput
from core.models import Role
from core.types import STAGES

router = APIRouter(prefix=f"{CONSOLE_PREFIX}/admin")
LOG_PAGE = 200
ACTIVE = frozenset({"queued", "running"})


@router.get("")
def admin_home() -> Response:
    return see_other(f"{CONSOLE_PREFIX}/admin/keys")


def keys_page(
    request: Request, user: ConsoleUser, db: DbDep, created: object = None, status_code: int = 200
) -> HTMLResponse:
    items = api.list_keys(db, user.principal)
    return page(request, "admin_keys.html", user, status_code, keys=items, created=created, section="keys")


@router.get("/keys")
def keys(request: Request, user: UserDep, db: DbDep) -> HTMLResponse:
    return keys_page(request, user, db)


@router.post("/keys")
def create_key(
    request: Request,
    user: UserDep,
    db: DbDep,
    name: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=16)],
    collections: Annotated[str, Form(max_length=4000)] = "",
) -> HTMLResponse:
    """The new key is in this one response only (only its hash is stored)."""
    scope = [c.strip() for c in collections.split(",") if c.strip()] or None
    created = api.create_key(api_body(KeyIn, name=name.strip(), role=role, collections=scope), db, user.principal)
    return keys_page(request, user, db, created=created, status_code=201)


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: str, user: UserDep, db: DbDep) -> Response:
    api.revoke_key(key_id, db, user.principal)
    return see_other(f"{CONSOLE_PREFIX}/admin/keys")


@router.get("/reindex")
def reindex_page(request: Request, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    user.principal.require_role(Role.admin)
    visible = api_collections.list_collections(ingest, user.principal)
    items = [c for c in visible if user.principal.can(Role.admin, c.name)]
    return page(request, "admin_reindex.html", user, collections=items, section="reindex")


def job_fragment(request: Request, user: ConsoleUser, job: ReindexJobOut) -> HTMLResponse:
    return page(request, "_job.html", user, job=job, active=job.status in ACTIVE)


@router.post("/reindex/{name}")
def start_reindex(request: Request, name: str, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    job = api.start_reindex(name, request, ingest, user.principal, None)
    return job_fragment(request, user, job)


@router.get("/reindex/jobs/{job_id}")
def reindex_job(request: Request, job_id: str, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    """The job's progress bar and ETA; it asks for itself again every second until the job ends."""
    return job_fragment(request, user, api.reindex_status(job_id, ingest, user.principal))


def parse_instant(label: str, value: str | None) -> datetime | None:
    """A ``datetime-local`` field (read as UTC) or a full ISO 8601 time; empty = not given."""
    text = optional_text(value)
    if text is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise BadInput(f"{label}: {text!r} is not a date and time like 2025-01-31T14:00.") from None


def parse_latency(value: str | None) -> float | None:
    text = optional_text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise BadInput(f"minimum latency: {text!r} is not a number of milliseconds of 0 or more.")
    return number


@router.get("/queries")
def query_log(
    request: Request,
    user: UserDep,
    db: DbDep,
    ingest: IngestDep,
    collection: str | None = None,
    since: str | None = None,
    until: str | None = None,
    min_latency_ms: str | None = None,
    errors: bool = False,
) -> HTMLResponse:
    filters = {
        "collection": optional_text(collection),
        "since": optional_text(since),
        "until": optional_text(until),
        "min_latency_ms": optional_text(min_latency_ms),
        "errors": errors,
    }
    logs = api.query_logs(
        db,
        user.principal,
        collection=filters["collection"],  # type: ignore[arg-type]
        since=parse_instant("since", since),
        until=parse_instant("until", until),
        min_latency_ms=parse_latency(min_latency_ms),
        errors=errors,
        limit=LOG_PAGE,
        offset=0,
    )
    names = [c.name for c in api_collections.list_collections(ingest, user.principal)]
    chart = histogram("Latency of the queries listed", [q.latency_ms for q in logs.items])
    return page(
        request, "admin_queries.html", user, logs=logs, filters=filters, names=names, chart=chart, section="queries"
    )


@router.get("/queries/{query_id}")
def query_trace(request: Request, query_id: str, user: UserDep, db: DbDep) -> HTMLResponse:
    row = api_query.query_log(query_id, db, user.principal)
    timings = {k: float(v) for k, v in row.timings_ms.items() if isinstance(v, int | float)}
    chart = bar_chart("Time per stage (ms)", list(timings), list(timings.values()), fmt="{:.1f}") if timings else None
    order = {stage: i for i, stage in enumerate(STAGES)}
    stages = sorted(row.retrieval.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    return page(request, "admin_query.html", user, row=row, stages=stages, chart=chart, section="queries")


@router.get("/evaluations")
def evaluations(request: Request, user: UserDep, settings: SettingsDep, report: str | None = None) -> HTMLResponse:
    """Reports describe whole collections and their questions: unscoped admins only, like key management."""
    user.principal.require_unscoped(Role.admin)
    folder = settings.eval_reports_path
    names = reports.list_reports(folder)
    chosen = optional_text(report) or (names[0] if names else None)
    view = reports.report_view(chosen, reports.load_report(folder, chosen)) if chosen else None
    return page(request, "admin_evals.html", user, names=names, view=view, folder=folder, section="evaluations")
