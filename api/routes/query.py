from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api.deps import DbDep, LimitsDep, PrincipalDep, QueriesDep, SettingsDep, identity
from api.schemas import QueryIn, QueryLogOut, QueryOut
from core.errors import BadInput, NotFound
from core.models import Role
from core.types import SearchFilter
from generation.query_log import get_query_log
from generation.query_types import QueryRequest

router = APIRouter(tags=["query"])

T = TypeVar("T")

_DONE = object()


async def iterate_in_thread(events: Iterator[T]) -> AsyncIterator[T]:
    """Run a blocking generator off the event loop; closing it (client gone) stops generation."""
    try:
        while True:
            event = await anyio.to_thread.run_sync(next, events, _DONE)
            if event is _DONE:
                return
            yield event
    finally:
        await anyio.to_thread.run_sync(events.close)  # type: ignore[attr-defined]


async def drain_in_thread(events: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, str]]:
    """The native stream: one named Server-Sent Event per query event."""
    async with aclosing(iterate_in_thread(events)) as stream:
        async for event in stream:
            yield {"event": event["type"], "data": json.dumps(event, default=str)}


SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": 'JSON, or with "stream": true Server-Sent Events',
    }
}


@router.post("/v1/collections/{name}/query", response_model=QueryOut, responses=SSE_RESPONSE)
def query(
    name: str,
    body: QueryIn,
    request: Request,
    queries: QueriesDep,
    settings: SettingsDep,
    limits: LimitsDep,
    principal: PrincipalDep,
) -> Any:
    principal.require(Role.reader, name)
    limits.hit("query", identity(principal, request))
    if len(body.query) > settings.max_query_chars:
        raise BadInput(f"The query is {len(body.query)} characters; the limit is {settings.max_query_chars}.")
    ask = QueryRequest(
        query=body.query,
        top_k=body.top_k,
        mode=body.mode,
        generate=body.generate,
        filters=body.filters.to_filter() if body.filters else SearchFilter(),
        use_cache=body.cache,
        owner=principal.owner,
        answer_mode=body.answer_mode,
    )
    if body.stream:
        if not body.generate:
            raise BadInput('"stream": true needs "generate": true.')
        return EventSourceResponse(drain_in_thread(queries.stream(name, ask)))
    return queries.query(name, ask).to_dict()


@router.get("/v1/queries/{query_id}")
def query_log(query_id: str, db: DbDep, principal: PrincipalDep) -> QueryLogOut:
    """Query logs hold users' questions: admins only, and only of the collections in the key's scope."""
    principal.require_role(Role.admin)
    row = get_query_log(db, query_id)
    principal.require_visible(Role.admin, row.collection, NotFound(f"Query {query_id!r} does not exist."))
    return QueryLogOut.model_validate(row)
