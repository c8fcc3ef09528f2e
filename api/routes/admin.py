from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, status

from api.deps import DbDep, IngestDep, PrincipalDep
from api.schemas import (
    MAX_OFFSET,
    CreatedKeyOut,
    ErrorOut,
    KeyIn,
    KeyOut,
    QueryLogOut,
    QueryLogPageOut,
    ReindexIn,
    ReindexJobOut,
    UtcDatetime,
)
from core import keys
from core.errors import NotFound
from core.models import ApiKey, Role
from core.retention import forget_owner
from generation.query_log import QueryLogFilter, list_query_logs
from ingest.service import JobView

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def key_out(record: ApiKey) -> KeyOut:
    return KeyOut(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        role=record.role,
        collections=record.collections,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def create_key(body: KeyIn, db: DbDep, principal: PrincipalDep) -> CreatedKeyOut:
    principal.require_unscoped(Role.admin)
    created = keys.create_key(db, body.name, body.role, body.collections)
    return CreatedKeyOut(**key_out(created.record).model_dump(), key=created.key)


@router.get("/keys")
def list_keys(db: DbDep, principal: PrincipalDep) -> list[KeyOut]:
    principal.require_unscoped(Role.admin)
    return [key_out(k) for k in keys.list_keys(db)]


@router.delete("/keys/{key_id}")
def revoke_key(key_id: str, db: DbDep, principal: PrincipalDep) -> KeyOut:
    principal.require_unscoped(Role.admin)
    return key_out(keys.revoke_key(db, key_id))


@router.delete("/keys/{key_id}/data")
def forget_key_data(key_id: str, db: DbDep, principal: PrincipalDep) -> dict[str, int]:
    """Remove what a key's user left behind: conversations, memory and query-log texts (ids and metrics stay)."""
    principal.require_unscoped(Role.admin)
    return forget_owner(db, "root" if key_id == "root" else keys.get_key(db, key_id).id)


def job_out(view: JobView) -> ReindexJobOut:
    job = view.job
    return ReindexJobOut(
        id=job.id,
        collection=view.collection,
        status=job.status,  # type: ignore[arg-type]
        source_version=job.source_version,
        target_version=job.target_version,
        options=job.options or {},
        total=job.total,
        done=job.done,
        errors=job.errors or [],
        eta_s=view.eta_s,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post(
    "/collections/{name}/reindex",
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"model": ErrorOut, "description": "A re-index of this collection is running"}},
)
def start_reindex(
    name: str,
    request: Request,
    ingest: IngestDep,
    principal: PrincipalDep,
    body: Annotated[ReindexIn | None, Body()] = None,
) -> ReindexJobOut:
    """Builds a new index version from the stored originals while the current one keeps serving.

    A new embedding model or keyword tokenizer takes effect with the switch, for queries too."""
    principal.require(Role.admin, name)
    options = body.options() if body else {}
    job = ingest.start_reindex(name, options, request.app.state.queue.enqueue_reindex)
    return job_out(ingest.get_job(job.id))


@router.get("/reindex/{job_id}")
def reindex_status(job_id: str, ingest: IngestDep, principal: PrincipalDep) -> ReindexJobOut:
    principal.require_role(Role.admin)
    view = ingest.get_job(job_id)
    principal.require_visible(Role.admin, view.collection, NotFound(f"Re-index job {job_id!r} does not exist."))
    return job_out(view)


@router.get("/queries")
def query_logs(
    db: DbDep,
    principal: PrincipalDep,
    collection: str | None = None,
    since: UtcDatetime | None = None,
    until: UtcDatetime | None = None,
    min_latency_ms: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    errors: Annotated[bool, Query(description="Only queries that failed or fell back.")] = False,
    backend: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> QueryLogPageOut:
    """The query log, newest first: what was asked, what each stage returned, which model answered, how fast."""
    if collection is None:
        principal.require_unscoped(Role.admin)
    else:
        principal.require(Role.admin, collection)
    flt = QueryLogFilter(collection, since, until, min_latency_ms, errors, backend)
    rows, total = list_query_logs(db, flt, limit, offset)
    return QueryLogPageOut(items=[QueryLogOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)
