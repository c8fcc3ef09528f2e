"""Ask a collection: every question is a conversation turn, so follow-ups are understood in context.

The answer streams as Server-Sent Events from the conversation service (the API's own turn checks run
first); the last event carries the answer rendered here, with its source cards and retrieval ranks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sse_starlette.sse import EventSourceResponse

from api.console import answer_view
from api.console.forms import api_body, optional_text
from api.console.security import CONSOLE_PREFIX, UserDep
from api.console.site import page, templates
from api.deps import ConversationsDep, IngestDep, LimitsDep, SettingsDep
from api.routes import collections as api_collections
from api.routes import conversations as api
from api.routes.query import drain_in_thread
from api.schemas import ConversationOut, MessageIn
from core.errors import NotFound
from core.models import Role

router = APIRouter(prefix=CONSOLE_PREFIX)
PASSED_ON = frozenset({"token", "reset", "error"})
ABSTAIN_REASONS = {
    "no_context": "nothing in this collection matched the question",
    "low_evidence": "the best sources do not hold an answer to it",
    "model": "the model declined to answer from these sources",
}


def render_answer(result: dict[str, Any], candidates: list[dict[str, Any]]) -> str:
    cited = [c for c in result.get("citations") or [] if c.get("number") is not None]
    retrieval = result.get("retrieval") or {}
    return templates.get_template("_answer.html").render(
        result=result,
        pieces=answer_view.answer_pieces(result.get("answer") or "", {c["number"] for c in cited}),
        sources=[(c, answer_view.highlighted(c)) for c in cited],
        why=answer_view.why_rows(retrieval, result.get("citations") or [], candidates),
        stages=answer_view.stages_run(retrieval),
        abstain_reason=ABSTAIN_REASONS.get(result.get("abstain_reason") or "", result.get("abstain_reason")),
    )


def rendered(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Tokens (and resets and errors) as they come; the final result as rendered HTML."""
    candidates: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "retrieval":
            candidates = event.get("candidates") or []
        elif event["type"] in PASSED_ON:
            yield event
        elif event["type"] == "done":
            yield {
                "type": "answer",
                "html": render_answer(event, candidates),
                "conversation_id": event.get("conversation_id"),
                "turn": event.get("turn"),
            }


def conversation_of(
    conversations: ConversationsDep, user: UserDep, name: str, conversation_id: str | None
) -> ConversationOut | None:
    if conversation_id is None:
        return None
    conversation = api.get_conversation(conversation_id, conversations, user.principal)
    if conversation.collection != name:
        raise NotFound(f"Conversation {conversation_id!r} does not exist.")
    return conversation


@router.get("/collections/{name}/ask")
def ask_page(
    request: Request,
    name: str,
    user: UserDep,
    ingest: IngestDep,
    conversations: ConversationsDep,
    conversation: str | None = None,
) -> HTMLResponse:
    user.principal.require(Role.reader, name)
    if not any(c.name == name for c in api_collections.list_collections(ingest, user.principal)):
        raise NotFound(f"Collection {name!r} does not exist.")
    current = conversation_of(conversations, user, name, optional_text(conversation))
    return page(request, "ask.html", user, name=name, conversation=current)


@router.post("/collections/{name}/ask")
def ask(
    request: Request,
    name: str,
    user: UserDep,
    conversations: ConversationsDep,
    settings: SettingsDep,
    limits: LimitsDep,
    question: Annotated[str, Form(max_length=100_000)],
    conversation_id: Annotated[str | None, Form(max_length=64)] = None,
) -> EventSourceResponse:
    body = api_body(MessageIn, message=question, stream=True)
    conversation_id = optional_text(conversation_id)
    if conversation_id is None:
        conversation_id = api.start_conversation(name, conversations, user.principal).id
    else:
        conversation_of(conversations, user, name, conversation_id)
    ask = api.message_request(conversation_id, body, request, conversations, settings, limits, user.principal)
    events = conversations.stream(conversation_id, api.owner_filter(user.principal), body.message, ask)
    return EventSourceResponse(drain_in_thread(rendered(events)))
