"""Server-Sent Events, decoded line by line (the WHATWG event-stream rules), then typed.

The decoder is fed the lines of the body without their line endings (httpx's ``iter_lines`` splits on
``\\n``, ``\\r\\n`` and ``\\r``, as the format allows), so the same code serves the sync and async clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from core.schemas import CitationOut, QueryOut


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Accumulates fields until a blank line dispatches the event; comments (``: ping``) are skipped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored, as the format says

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:  # an event without data is not dispatched
            self._event = ""
            return None
        event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data = "", []
        return event


def decode(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Every event in ``lines``; an unfinished event at the end of the stream is dropped, as the format says."""
    decoder = SSEDecoder()
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event


class RetrievalEvent(BaseModel):
    """First: what retrieval found, before any answer text."""

    type: Literal["retrieval"] = "retrieval"
    query_id: str
    retrieval: dict[str, list[str]]
    candidates: list[CitationOut]


class TokenEvent(BaseModel):
    """A piece of the answer text."""

    type: Literal["token"] = "token"
    text: str


class ResetEvent(BaseModel):
    """The text streamed so far is being replaced (it looped or was not grounded); ``reason`` says why."""

    type: Literal["reset"] = "reset"
    reason: str


class DoneEvent(QueryOut):
    """Last: the whole result, as the non-streaming answer carries it. In a conversation it also names the
    conversation and the turn."""

    type: Literal["done"] = "done"
    conversation_id: str | None = None
    turn: int | None = None


class ErrorEvent(BaseModel):
    """The stream ended early: ``status`` is the HTTP status the same failure gets without streaming."""

    type: Literal["error"] = "error"
    status: int
    detail: str


class OtherEvent(BaseModel):
    """An event type this client does not know yet (the server's contract may be extended); raw data kept."""

    type: str
    data: dict[str, Any]


StreamEvent = RetrievalEvent | TokenEvent | ResetEvent | DoneEvent | ErrorEvent | OtherEvent
_KNOWN = TypeAdapter(
    Annotated[RetrievalEvent | TokenEvent | ResetEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]
)


def typed(event: ServerSentEvent) -> StreamEvent:
    """The typed event for one SSE message of the query or message stream (its data is a JSON object whose
    ``type`` is the SSE event name)."""
    data = json.loads(event.data)
    if not isinstance(data, dict):
        raise ValueError(f"event {event.event!r} carries {type(data).__name__}, not a JSON object")
    kind = data.get("type", event.event)
    if kind in ("retrieval", "token", "reset", "done", "error"):
        return _KNOWN.validate_python({**data, "type": kind})
    return OtherEvent(type=kind, data=data)
