from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from sse_starlette.sse import EventSourceResponse

from api.deps import ConversationsDep, DbDep, LimitsDep, PrincipalDep, SettingsDep, identity
from api.limits import RateLimits
from api.routes.query import SSE_RESPONSE, drain_in_thread
from api.schemas import ConversationOut, MemoryIn, MessageIn, MessageOut, TurnOut
from core.config import Settings
from core.errors import BadInput, NotFound
from core.keys import Principal
from core.models import Conversation, Role, Turn
from core.types import SearchFilter
from generation.conversation import ConversationService, delete_memory, preferences_of, set_memory
from generation.query_types import QueryRequest

router = APIRouter(tags=["conversations"])

MemoryKey = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def owner_filter(principal: Principal) -> str | None:
    """Unscoped admins may read any conversation; everyone else only their own."""
    return None if principal.can(Role.admin) and principal.collections is None else principal.owner


def conversation_out(conversation: Conversation, collection: str, turns: list[Turn]) -> ConversationOut:
    return ConversationOut(
        id=conversation.id,
        collection=collection,
        summary=conversation.summary,
        summarized_turns=conversation.summarized_turns,
        created_at=conversation.created_at,
        turns=[
            TurnOut(
                ordinal=t.ordinal,
                question=t.question,
                rewritten_query=t.rewritten_query,
                rewrite_method=t.rewrite_method,
                answer=t.answer,
                citations=t.citations or [],
                query_id=t.query_id,
                created_at=t.created_at,
            )
            for t in turns
        ],
    )


def visible_conversation(
    conversations: ConversationService, conversation_id: str, principal: Principal
) -> tuple[Conversation, str, list[Turn]]:
    conversation, collection, turns = conversations.get(conversation_id, owner_filter(principal))
    principal.require_visible(Role.reader, collection, NotFound(f"Conversation {conversation_id!r} does not exist."))
    return conversation, collection, turns


@router.post("/v1/collections/{name}/conversations", status_code=status.HTTP_201_CREATED)
def start_conversation(name: str, conversations: ConversationsDep, principal: PrincipalDep) -> ConversationOut:
    principal.require(Role.reader, name)
    conversation = conversations.start(name, principal.owner)
    return conversation_out(conversation, name, [])


@router.get("/v1/conversations/{conversation_id}")
def get_conversation(conversation_id: str, conversations: ConversationsDep, principal: PrincipalDep) -> ConversationOut:
    conversation, collection, turns = visible_conversation(conversations, conversation_id, principal)
    return conversation_out(conversation, collection, turns)


@router.delete("/v1/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_conversation(conversation_id: str, conversations: ConversationsDep, principal: PrincipalDep) -> Response:
    visible_conversation(conversations, conversation_id, principal)
    conversations.delete(conversation_id, owner_filter(principal))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def message_request(
    conversation_id: str,
    body: MessageIn,
    request: Request,
    conversations: ConversationService,
    settings: Settings,
    limits: RateLimits,
    principal: Principal,
) -> QueryRequest:
    """Everything a turn checks before it runs (visibility, rate limit, length), shared by this API and the
    web console's streamed turns."""
    visible_conversation(conversations, conversation_id, principal)
    limits.hit("query", identity(principal, request))
    if len(body.message) > settings.max_query_chars:
        raise BadInput(f"The message is {len(body.message)} characters; the limit is {settings.max_query_chars}.")
    if body.stream and not body.generate:
        raise BadInput('"stream": true needs "generate": true.')
    return QueryRequest(
        query=body.message,
        top_k=body.top_k,
        mode=body.mode,
        generate=body.generate,
        filters=body.filters.to_filter() if body.filters else SearchFilter(),
        owner=principal.owner,
        answer_mode=body.answer_mode,
    )


@router.post("/v1/conversations/{conversation_id}/messages", response_model=MessageOut, responses=SSE_RESPONSE)
def post_message(
    conversation_id: str,
    body: MessageIn,
    request: Request,
    conversations: ConversationsDep,
    settings: SettingsDep,
    limits: LimitsDep,
    principal: PrincipalDep,
) -> Any:
    ask = message_request(conversation_id, body, request, conversations, settings, limits, principal)
    if body.stream:
        events = conversations.stream(conversation_id, owner_filter(principal), body.message, ask)
        return EventSourceResponse(drain_in_thread(events))
    turn, result = conversations.ask(conversation_id, owner_filter(principal), body.message, ask)
    return {
        **result.to_dict(),
        "conversation_id": conversation_id,
        "turn": turn.ordinal,
        "rewritten_query": turn.rewritten_query,
    }


@router.get("/v1/memory")
def list_memory(db: DbDep, principal: PrincipalDep) -> dict[str, str]:
    """The calling key's standing preferences, applied to every prompt it sends."""
    return preferences_of(db, principal.owner)


@router.put("/v1/memory/{key}")
def put_memory(key: MemoryKey, body: MemoryIn, db: DbDep, principal: PrincipalDep) -> dict[str, str]:
    set_memory(db, principal.owner, key, body.value)
    return preferences_of(db, principal.owner)


@router.delete("/v1/memory/{key}", status_code=status.HTTP_204_NO_CONTENT)
def delete_memory_key(key: MemoryKey, db: DbDep, principal: PrincipalDep) -> Response:
    if not delete_memory(db, principal.owner, key):
        raise NotFound(f"No preference named {key!r}.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/v1/memory", status_code=status.HTTP_204_NO_CONTENT)
def clear_memory(db: DbDep, principal: PrincipalDep) -> Response:
    delete_memory(db, principal.owner)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
