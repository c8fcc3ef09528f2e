from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import APIRouter
from sse_starlette.sse import EventSourceResponse

from api.deps import DbDep, QueriesDep, SettingsDep
from api.schemas import QueryIn, QueryLogOut, QueryOut
from core.errors import BadInput
from generation.query_service import QueryRequest, get_query_log

router = APIRouter(tags=["query"])

_DONE = object()


async def drain_in_thread(events: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, str]]:
    """Run a blocking event generator off the event loop; closing it (client gone) stops generation."""
    try:
        while True:
            event = await anyio.to_thread.run_sync(next, events, _DONE)
            if event is _DONE:
                return
            yield {"event": event["type"], "data": json.dumps(event, default=str)}
    finally:
        await anyio.to_thread.run_sync(events.close)


@router.post("/v1/collections/{name}/query", response_model=QueryOut)
def query(name: str, body: QueryIn, queries: QueriesDep, settings: SettingsDep) -> Any:
    if len(body.query) > settings.max_query_chars:
        raise BadInput(f"The query is {len(body.query)} characters; the limit is {settings.max_query_chars}.")
    request = QueryRequest(
        query=body.query,
        top_k=body.top_k,
        mode=body.mode,
        generate=body.generate,
        filters=body.filters.to_filter() if body.filters else QueryRequest().filters,
    )
    if body.stream:
        if not body.generate:
            raise BadInput('"stream": true needs "generate": true.')
        return EventSourceResponse(drain_in_thread(queries.stream(name, request)))
    return queries.query(name, request).to_dict()


@router.get("/v1/queries/{query_id}")
def query_log(query_id: str, db: DbDep) -> QueryLogOut:
    return QueryLogOut.model_validate(get_query_log(db, query_id))
