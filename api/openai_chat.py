"""The platform's answers in the OpenAI Chat Completions shape: pure translation, no I/O.

``messages`` become a :class:`Transcript` (system and developer messages are the client's instructions, the
last message is the question, earlier user/assistant pairs the history); a query result becomes a
``chat.completion``, a query's event stream becomes ``chat.completion.chunk`` events. Citations stay ``[n]``
markers in the content and each marker gets an annotation (``type: "file_citation"``, with ``start_index`` /
``end_index`` of the marker and the cited chunk's file, page, id and quoted sentence with its offsets in the
chunk). The platform's own verdict (query id, answer mode, abstention, groundedness) is the extra ``rag``
field of the completion (of the last chunk when streaming); the openai package keeps unknown fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from api.openai_schemas import ChatMessageIn
from core.errors import BadInput
from generation.citations import citation_markers
from generation.conversation import Transcript

Event = dict[str, Any]
CountTokens = Callable[[str], int]
RESET_SEPARATOR = "\n\n"
"""What separates a streamed draft from the answer that replaced it: a stream cannot take text back."""
_WORDS = re.compile(r"\s*\S+")


class InvalidRequest(BadInput):
    """A 400 ``invalid_request_error`` naming the offending parameter."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def transcript_of(messages: Sequence[ChatMessageIn]) -> Transcript:
    """The last message is the question and must be the user's; a user message followed by an assistant
    message is one past turn; system and developer messages, wherever they are, are the instructions."""
    instructions = [m.text().strip() for m in messages if m.role in ("system", "developer") and m.text().strip()]
    dialogue = [m for m in messages if m.role in ("user", "assistant")]
    if not dialogue or dialogue[-1].role != "user" or not dialogue[-1].text().strip():
        raise InvalidRequest("The last message must be the user's question, with text.", "messages")
    turns: list[tuple[str, str | None]] = []
    pending: str | None = None
    for message in dialogue[:-1]:
        text = message.text().strip()
        if message.role == "user":
            if pending is not None:
                turns.append((pending, None))
            pending = text
        elif pending is not None:
            turns.append((pending, text))
            pending = None
    if pending is not None:
        turns.append((pending, None))
    return Transcript(dialogue[-1].text().strip(), turns, "\n".join(instructions) or None)


def prompt_text(messages: Sequence[ChatMessageIn]) -> str:
    return "\n".join(m.text() for m in messages)


class ContentLimit:
    """``stop`` and ``max_tokens`` on content that arrives in pieces: ``feed`` returns what may be sent now,
    holding back a tail that could be the start of a stop sequence; ``close`` releases it at the end.

    Content ends before the first stop sequence (``finish_reason`` "stop") or at the last whole word that
    fits ``max_tokens`` counted with the project's token counting (``finish_reason`` "length").
    """

    def __init__(self, stops: Sequence[str], max_tokens: int | None, count_tokens: CountTokens) -> None:
        self.stops = list(stops)
        self.max_tokens = max_tokens
        self.count = count_tokens
        self.sent = ""
        self.held = ""
        self.ended = False
        self.finish_reason = "stop"

    def feed(self, text: str) -> str:
        if self.ended:
            return ""
        pending = self.held + text
        cut = min((i for i in (pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.ended = True
            self.held = ""
            return self._within_budget(pending[:cut])
        keep = max((k for s in self.stops for k in range(1, len(s)) if pending.endswith(s[:k])), default=0)
        self.held = pending[len(pending) - keep :]
        return self._within_budget(pending[: len(pending) - keep])

    def close(self) -> str:
        held, self.held = self.held, ""
        return "" if self.ended else self._within_budget(held)

    def _within_budget(self, text: str) -> str:
        if self.max_tokens is None or not text or self.count(self.sent + text) <= self.max_tokens:
            self.sent += text
            return text
        words = [m.group(0) for m in _WORDS.finditer(text)]
        low, high = 0, len(words)  # the most words that fit: count(sent + words[:low]) <= max_tokens
        while low < high:
            middle = (low + high + 1) // 2
            if self.count(self.sent + "".join(words[:middle])) <= self.max_tokens:
                low = middle
            else:
                high = middle - 1
        fitted = "".join(words[:low])
        self.sent += fitted
        self.ended = True
        self.finish_reason = "length"
        return fitted


def quoted_span(cited: dict[str, Any], before: str) -> dict[str, Any]:
    """The span of the cited chunk that the text before a marker quotes (a chunk cited after several
    sentences has a span for each); the citation's first span when none is quoted there."""
    spans = cited.get("spans") or []
    first = {"quote": cited.get("quote"), "start": cited.get("start"), "end": cited.get("end")}
    return next((span for span in spans if span["quote"] and span["quote"] in before), spans[0] if spans else first)


def annotations(content: str, citations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``file_citation`` per source a marker of ``content`` names (a marker citing two sources gets two),
    with the sentence of the source that the text before the marker rests on."""
    by_number = {c["number"]: c for c in citations if c.get("number") is not None}
    out: list[dict[str, Any]] = []
    previous_end = 0
    for start, end, numbers in citation_markers(content, by_number):
        before = content[previous_end:start]
        previous_end = end
        for number in numbers:
            cited = by_number[number]
            span = quoted_span(cited, before)
            out.append(
                {
                    "type": "file_citation",
                    "text": content[start:end],
                    "start_index": start,
                    "end_index": end,
                    "file_citation": {
                        "number": number,
                        "file_id": cited.get("document_id"),
                        "filename": cited.get("filename"),
                        "page": cited.get("page"),
                        "chunk_id": cited.get("chunk_id"),
                        "quote": span["quote"],
                        "start": span["start"],
                        "end": span["end"],
                        "score": cited.get("score"),
                    },
                }
            )
    return out


def rag_fields(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("query_id", "answer_mode", "abstained", "abstain_reason", "fallback_reason", "groundedness", "backend")
    return {k: result.get(k) for k in keys}


def usage_of(result: dict[str, Any], prompt: str, content: str, count_tokens: CountTokens) -> dict[str, int]:
    """The LLM's own counts when it wrote the answer; otherwise the question's and the content's tokens."""
    used = result.get("usage") or {}
    if used.get("prompt_tokens"):
        prompt_tokens, completion_tokens = int(used["prompt_tokens"]), int(used.get("completion_tokens", 0))
    else:
        prompt_tokens, completion_tokens = count_tokens(prompt), count_tokens(content) if content else 0
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass
class Completion:
    """What every chunk and the completion of one request share."""

    id: str
    created: int
    model: str
    prompt: str
    limit: ContentLimit
    include_usage: bool = False
    buffered: bool = False
    """Send the content only once the answer is final (``auto`` may replace a streamed draft)."""

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra,
        }

    def message(self, result: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming ``chat.completion`` of a finished query result."""
        limit = self.limit
        content = limit.feed(result.get("answer") or "") + limit.close()
        message = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "annotations": annotations(content, result.get("citations", [])),
        }
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": limit.finish_reason, "logprobs": None}],
            "usage": usage_of(result, self.prompt, content, limit.count),
            "rag": rag_fields(result),
        }

    def chunks(self, events: Iterator[Event]) -> Iterator[dict[str, Any]]:
        """A query's events as chunks: the role first (on the ``retrieval`` event), content deltas as ``token``
        events arrive, then the annotations, a chunk with ``finish_reason``, and the usage chunk when asked
        for. An ``error`` event (the LLM failed mid-answer) ends the stream with an OpenAI error object."""
        segment = ""  # what the current answer streamed since the last reset
        try:
            for event in events:
                kind = event["type"]
                if kind == "retrieval":  # always first: the completion is named after the query it logs
                    self.id = f"chatcmpl-{event['query_id']}"
                    yield self.chunk({"role": "assistant", "content": ""})
                elif kind == "token" and not self.buffered:
                    segment += event["text"]
                    yield from self._content(event["text"])
                elif kind == "reset" and not self.buffered:
                    segment = ""
                    yield from self._content(RESET_SEPARATOR)
                elif kind == "error":
                    yield error_body(int(event.get("status", 503)), str(event.get("detail", "")))
                    return
                elif kind == "done":
                    yield from self._finish(event, segment)
                    return
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def _content(self, text: str) -> Iterator[dict[str, Any]]:
        piece = self.limit.feed(text)
        if piece:
            yield self.chunk({"content": piece})

    def _finish(self, result: Event, segment: str) -> Iterator[dict[str, Any]]:
        answer = result.get("answer") or ""
        rest = answer[len(segment) :] if answer.startswith(segment) else ""
        piece = self.limit.feed(rest) + self.limit.close()
        if piece:
            yield self.chunk({"content": piece})
        content = self.limit.sent
        cited = annotations(content, result.get("citations", []))
        if cited:
            yield self.chunk({"annotations": cited})
        yield self.chunk({}, self.limit.finish_reason, rag=rag_fields(result))
        if self.include_usage:
            usage = usage_of(result, self.prompt, content, self.limit.count)
            yield {**self.chunk({}), "choices": [], "usage": usage}


# --- errors ----------------------------------------------------------------------------------

ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "insufficient_permissions"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}


def openai_status(status: int) -> int:
    """Validation failures are 400 in OpenAI's API (422 in the native one)."""
    return 400 if status == 422 else status


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind, default_code = ERROR_KINDS.get(openai_status(status), ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


def param_path(loc: Sequence[Any]) -> str | None:
    """A pydantic location as OpenAI names parameters: ``messages[0].content``."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def validation_error(errors: Sequence[dict[str, Any]]) -> tuple[str, str | None, str | None]:
    """(message, param, code) of the first validation error, worded like OpenAI's."""
    if not errors:
        return "Invalid request body.", None, None
    first = errors[0]
    param = param_path(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request.", None, None
    if first.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    return f"Invalid value for '{param}': {first.get('msg', 'invalid')}", param, "invalid_value"
