"""The query log: one ``QueryLog`` row and one structured log line per query, the metrics, and the admin listing.

The SQL row keeps every stage's full candidate ids (the trace of a query); the log line keeps the top ids of
each stage and their counts, so a line stays small whatever ``RAG_CANDIDATES`` is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from core.config import Settings
from core.db import Database
from core.errors import NotFound
from core.ids import sha256_hex
from core.metrics import (
    CACHE_HITS,
    CACHE_MISSES,
    EMPTY_RETRIEVALS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    QUERIES,
    observe_stages,
)
from core.models import QueryLog
from core.redaction import redact_text
from core.tracing import flat_attributes, recording_span
from generation.query_types import QueryRequest, QueryResult, filters_to_json

log = logging.getLogger("generation.query_service")

LOGGED_IDS = 10
"""Candidate ids per stage the log line keeps (the SQL row keeps them all)."""


def logged_query_text(query: str, settings: Settings) -> str:
    """What the query log keeps of the question (``RAG_LOG_QUERY_TEXT``), redacted when logs are."""
    if settings.log_query_text == "none":
        return ""
    if settings.log_query_text == "hash":
        return "sha256:" + sha256_hex(query.encode())
    return redact_text(query) if settings.redact_logs else query


def logged_retrieval(retrieval: dict[str, list[str]]) -> dict[str, Any]:
    """The top ids of every stage and how many there were, for the log line."""
    return {stage: {"top": ids[:LOGGED_IDS], "count": len(ids)} for stage, ids in retrieval.items()}


def record_query(
    db: Database, settings: Settings, result: QueryResult, request: QueryRequest, error: str | None, cache_used: bool
) -> None:
    """Write the ``QueryLog`` row, the log line and the span attributes of one finished query."""
    observe_query(result, request.mode, cache_used)
    with db.session() as session:
        session.add(
            QueryLog(
                id=result.query_id,
                collection=result.collection,
                index_version=result.index_version,
                owner=request.owner,
                query=logged_query_text(request.query, settings),
                mode=request.mode,
                top_k=request.top_k,
                filters=filters_to_json(request.filters),
                retrieval=result.retrieval,
                answer=redact_text(result.answer) if result.answer and settings.redact_logs else result.answer,
                citations=[{k: v for k, v in c.items() if k != "text"} for c in result.citations],
                model=result.model,
                backend=result.backend,
                usage=result.usage,
                timings_ms=result.timings_ms,
                events=result.events,
                error=error,
                latency_ms=result.timings_ms.get("total", 0.0),
            )
        )
    fields = {
        "query_id": result.query_id,
        "collection": result.collection,
        "index_version": result.index_version,
        "mode": request.mode,
        "retrieval": logged_retrieval(result.retrieval),
        "model": result.model,
        "backend": result.backend,
        "usage": result.usage,
        "timings_ms": result.timings_ms,
        "cache": result.cache,
        "answer_mode": result.answer_mode,
        "fallback_reason": result.fallback_reason,
        "abstained": result.abstained,
        "groundedness": result.groundedness,
        "events": result.events,
        "error": error,
    }
    log.info("query", extra=fields)
    if (current := recording_span()) is not None:
        current.set_attributes(flat_attributes({**fields, "retrieval": result.retrieval}))


def observe_query(result: QueryResult, mode: str, cache_used: bool) -> None:
    """The metrics side of ``record_query``; a cached answer spent no tokens and ran no stage now."""
    QUERIES.labels(mode).inc()
    if not any(result.retrieval.values()):
        EMPTY_RETRIEVALS.labels(mode).inc()
    hit = bool(result.cache.get("hit"))
    if cache_used:
        (CACHE_HITS if hit else CACHE_MISSES).labels("answer").inc()
    if hit:
        return
    observe_stages({stage: ms for stage, ms in result.timings_ms.items() if stage != "total"})
    if result.backend and result.usage:
        model = result.model or "unknown"
        INPUT_TOKENS.labels(result.backend, model).inc(result.usage.get("prompt_tokens", 0))
        OUTPUT_TOKENS.labels(result.backend, model).inc(result.usage.get("completion_tokens", 0))


@dataclass(frozen=True)
class QueryLogFilter:
    collection: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_latency_ms: float | None = None
    errors_only: bool = False
    backend: str | None = None


def list_query_logs(db: Database, flt: QueryLogFilter, limit: int, offset: int) -> tuple[list[QueryLog], int]:
    """Newest first; the total counts every match, for pagination."""
    where = []
    if flt.collection is not None:
        where.append(QueryLog.collection == flt.collection)
    if flt.since is not None:
        where.append(QueryLog.created_at >= flt.since)
    if flt.until is not None:
        where.append(QueryLog.created_at <= flt.until)
    if flt.min_latency_ms is not None:
        where.append(QueryLog.latency_ms >= flt.min_latency_ms)
    if flt.errors_only:
        where.append(QueryLog.error.is_not(None))
    if flt.backend is not None:
        where.append(QueryLog.backend == flt.backend)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(QueryLog).where(*where)) or 0
        rows = session.scalars(
            select(QueryLog).where(*where).order_by(QueryLog.created_at.desc()).limit(limit).offset(offset)
        ).all()
        return list(rows), total


def get_query_log(db: Database, query_id: str) -> QueryLog:
    with db.session() as session:
        row = session.get(QueryLog, query_id)
        if row is None:
            raise NotFound(f"Query {query_id!r} does not exist.")
        return row
