"""OpenAI-compatible routes: ``POST /v1/chat/completions`` and ``GET /v1/models`` (a model is a collection).

Thin like every route: the answer comes from the conversation service (follow-up rewriting, history in the
token budget, the key's preferences) over the same query service as ``POST /v1/collections/{c}/query``, with
the same keys, roles, scopes, rate-limit bucket and query log. Errors on these routes, and only on them, take
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` (the route class below), so the openai
package raises its own exception types.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import ConversationsDep, DbDep, IngestDep, LimitsDep, PrincipalDep, SettingsDep, identity
from api.openai_chat import (
    Completion,
    ContentLimit,
    InvalidRequest,
    error_body,
    openai_status,
    prompt_text,
    transcript_of,
    validation_error,
)
from api.openai_schemas import ChatCompletionIn, OpenAIErrorOut
from api.routes.query import iterate_in_thread
from core.collections import get_collection
from core.errors import NotFound, RagError, RateLimited
from core.jsonsafe import repair_text
from core.models import Collection, Role
from core.types import SearchFilter
from generation.query_types import QueryRequest

OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorOut, "description": description}
    for status, description in {
        400: "invalid_request_error: a parameter is refused or malformed (param names it)",
        401: "invalid_api_key: missing, invalid or revoked API key",
        403: "permission_error: the collection is outside the key's scope",
        404: "model_not_found: no collection of that name",
        429: "rate_limit_exceeded: over the per-key query rate limit (Retry-After says when to retry)",
        503: "server_error: a dependency is unavailable (Retry-After says when to retry)",
    }.items()
}


def openai_error_response(
    status: int, message: str, param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = error_body(status, repair_text(message), param, code)
    return JSONResponse(body, status_code=openai_status(status), headers=headers)


class OpenAIRoute(APIRoute):
    """Turns the platform's errors into OpenAI's error shape for the routes of this router only; the native
    API keeps ``{"detail"}``. Unexpected errors still reach the app's 500 handler (incident id, no details)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                message, param, code = validation_error(list(exc.errors()))
                return openai_error_response(400, message, param, code)
            except RagError as exc:
                if isinstance(exc, InvalidRequest):
                    return openai_error_response(400, exc.message, exc.param, exc.code)
                param = "model" if isinstance(exc, NotFound) else None
                headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
                if exc.status_code == 503:
                    headers = {"Retry-After": "5"}
                return openai_error_response(exc.status_code, exc.message, param, headers=headers)
            except StarletteHTTPException as exc:
                return openai_error_response(exc.status_code, str(exc.detail), headers=exc.headers)

        return route


router = APIRouter(tags=["openai"], route_class=OpenAIRoute, responses=OPENAI_ERRORS)


def model_out(collection: Collection) -> dict[str, Any]:
    return {
        "id": collection.name,
        "object": "model",
        "created": int(collection.created_at.timestamp()),
        "owned_by": "hybrid-rag",
    }


def missing_model(name: str) -> NotFound:
    return NotFound(f"The model {name!r} does not exist: a model is a collection this key may read (GET /v1/models).")


@router.get("/v1/models")
def list_models(ingest: IngestDep, principal: PrincipalDep) -> dict[str, Any]:
    """The collections this key may read, as OpenAI models."""
    data = [model_out(c) for c, _ in ingest.list_collections() if principal.can(Role.reader, c.name)]
    return {"object": "list", "data": data}


@router.get("/v1/models/{model}")
def get_model(model: str, db: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    principal.require(Role.reader, model)
    try:
        return model_out(get_collection(db, model))
    except NotFound:
        raise missing_model(model) from None


async def openai_events(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, str]]:
    """``data: {chunk}`` per chunk, then ``data: [DONE]`` (not after an error object, as OpenAI does)."""
    failed = False
    async with aclosing(iterate_in_thread(chunks)) as stream:
        async for chunk in stream:
            failed = failed or "error" in chunk
            yield {"data": json.dumps(chunk, default=str)}
    if not failed:
        yield {"data": "[DONE]"}


@router.post("/v1/chat/completions", responses={200: {"content": {"text/event-stream": {}}}})
def chat_completions(
    body: ChatCompletionIn,
    request: Request,
    conversations: ConversationsDep,
    settings: SettingsDep,
    limits: LimitsDep,
    principal: PrincipalDep,
) -> Any:
    """``model`` names the collection; the platform's own options go in ``rag`` (``extra_body`` in openai)."""
    principal.require(Role.reader, body.model)
    limits.hit("query", identity(principal, request))
    transcript = transcript_of(body.messages)
    if len(transcript.question) > settings.max_query_chars:
        raise InvalidRequest(
            f"The question is {len(transcript.question)} characters; the limit is {settings.max_query_chars}.",
            "messages",
        )
    options = body.rag
    ask = QueryRequest(
        query=transcript.question,
        top_k=options.top_k if options else 5,
        mode=options.mode if options else "hybrid",
        filters=options.filters.to_filter() if options and options.filters else SearchFilter(),
        use_cache=options.cache if options else True,
        owner=principal.owner,
        answer_mode=options.answer_mode if options else None,
        max_tokens=body.token_limit(),
        temperature=body.temperature,
    )
    queries = conversations.queries
    completion = Completion(
        id="",  # named after the query id once it is known
        created=int(time.time()),
        model=body.model,
        prompt=prompt_text(body.messages),
        limit=ContentLimit(body.stops(), body.token_limit(), queries.count_tokens),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        buffered=(ask.answer_mode or settings.answer_mode) == "auto",
    )
    try:
        if body.stream:
            events = conversations.stream_transcript(body.model, principal.owner, transcript, ask)
            return EventSourceResponse(openai_events(completion.chunks(events)))
        result = conversations.ask_transcript(body.model, principal.owner, transcript, ask)
    except NotFound:
        raise missing_model(body.model) from None
    completion.id = f"chatcmpl-{result.query_id}"
    return completion.message(result.to_dict())
