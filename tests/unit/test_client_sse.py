"""The client's SSE decoding on event text recorded from a running server (``ragctl serve``, llm none), and
on edge cases written by sse-starlette, the encoder the server uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sse_starlette.sse import ServerSentEvent as Encoded

from client.sse import (
    DoneEvent,
    ErrorEvent,
    OtherEvent,
    RetrievalEvent,
    ServerSentEvent,
    SSEDecoder,
    TokenEvent,
    decode,
    typed,
)

DATA = Path(__file__).parent / "data"


def lines_of(raw: bytes) -> list[str]:
    """Split as httpx's ``iter_lines`` does: on CRLF, LF or CR, without the endings."""
    return raw.decode("utf-8").splitlines()


def test_a_recorded_query_stream_decodes_to_typed_events() -> None:
    raw = (DATA / "query_stream.sse").read_bytes()
    assert b"\r\n" in raw  # sse-starlette ends lines with CRLF
    events = [typed(e) for e in decode(lines_of(raw))]
    assert [e.type for e in events] == ["retrieval", "token", "token", "done"]
    retrieval, first, second, done = events
    assert isinstance(retrieval, RetrievalEvent) and retrieval.candidates[0].filename == "reefs.txt"
    assert retrieval.retrieval["fused"] == [retrieval.candidates[0].chunk_id]
    assert isinstance(first, TokenEvent) and isinstance(second, TokenEvent)
    assert isinstance(done, DoneEvent) and done.answer == first.text + second.text
    assert done.query_id == retrieval.query_id and done.citations[0].number == 1
    assert done.citations[0].quote and done.conversation_id is None


def test_a_recorded_conversation_stream_names_its_conversation_and_turn() -> None:
    events = [typed(e) for e in decode(lines_of((DATA / "message_stream.sse").read_bytes()))]
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.conversation_id and done.turn == 0
    assert any(e.get("type") == "query_rewritten" for e in done.events)


def test_comments_multiline_data_ids_and_unknown_events() -> None:
    raw = b"".join(
        [
            Encoded(comment="ping - 2026-01-01 00:00:00").encode(),
            Encoded(data='{"type": "token",\n "text": "two lines"}', event="token", id="7").encode(),
            Encoded(data='{"type": "verified", "sentences": 2}', event="verified").encode(),
            Encoded(data='{"type": "error", "status": 503, "detail": "LLM down"}', event="error").encode(),
        ]
    )
    sse = list(decode(lines_of(raw)))
    assert sse[0] == ServerSentEvent("token", '{"type": "token",\n "text": "two lines"}', "7")
    token, other, error = (typed(e) for e in sse)
    assert token == TokenEvent(text="two lines")
    assert isinstance(other, OtherEvent) and other.type == "verified" and other.data["sentences"] == 2
    assert error == ErrorEvent(status=503, detail="LLM down")


def test_event_boundaries_follow_the_format() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("event: token") is None
    assert decoder.feed("") is None  # no data: not dispatched, and the event name is reset
    assert decoder.feed("data:{}") is None  # no space after the colon is fine too
    assert decoder.feed("") == ServerSentEvent("message", "{}")
    # an event cut off before its blank line is dropped
    assert list(decode(["event: token", 'data: {"type": "token", "text": "x"}'])) == []


def test_data_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        typed(ServerSentEvent("token", "[1, 2]"))
