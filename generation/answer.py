"""Question + ranked hits -> the LLM's cited draft as a stream of events, and the answer types every mode returns.

Generation is always streamed, so the loop guard can stop it early; a caller that wants the whole draft
drains the stream (``generation.modes.final_answer``). The steps: screen chunks for injections, pack the
prompt in the token budget, generate under the loop guard, filter the output, read the citations back.
Everything a query log needs (truncation, injection flags, fallback events, usage, timings) is collected on
the ``Answer``. The answer
modes (``generation.modes``) verify the draft or answer without the LLM at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.redaction import redact
from core.types import Hit
from generation.backends.base import LLMBackend
from generation.backends.fallback import ChainStream
from generation.citations import cited_numbers, is_abstention
from generation.loops import LoopGuard, cut_loop, guarded
from generation.prompt import ABSTAIN_TEXT, PROMPT_VERSION, SYSTEM_PROMPT, PackedPrompt, Source, pack_prompt
from generation.safety import apply_output_filters, injection_score

InjectionPolicy = Literal["down_rank", "drop"]


@dataclass(frozen=True)
class PromptContext:
    """What a prompt carries besides the question and the sources."""

    history: Sequence[dict[str, str]] = ()
    instructions: str | None = None
    redact: bool = False
    """Mask personal data and secrets before the text leaves for the backend (external backends)."""


NO_CONTEXT = PromptContext()


def redact_messages(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, int]]:
    counts: dict[str, int] = {}
    out = []
    for message in messages:
        result = redact(message["content"])
        for label, n in result.counts.items():
            counts[label] = counts.get(label, 0) + n
        out.append({**message, "content": result.text})
    return out, counts


@dataclass(frozen=True)
class Span:
    """A quoted sentence: ``chunk_text[start:end] == quote``."""

    start: int
    end: int
    quote: str


@dataclass
class Citation:
    """A cited chunk and the sentences of it the answer rests on (empty for an unverified draft)."""

    number: int
    chunk_id: str
    document_id: str | None
    filename: str | None
    page: int | None
    text: str
    score: float
    spans: list[Span] = field(default_factory=list)
    ocr: bool = False

    @classmethod
    def of_source(cls, source: Source) -> Citation:
        return cls(
            source.number,
            source.chunk_id,
            source.document_id,
            source.filename,
            source.page,
            source.text,
            source.score,
            ocr=source.ocr,
        )

    def to_dict(self, score: float | None = None) -> dict[str, Any]:
        first = self.spans[0] if self.spans else None
        return {
            "number": self.number,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "filename": self.filename,
            "page": self.page,
            "score": round(float(self.score if score is None else score), 6),
            "text": self.text,
            "quote": first.quote if first else None,
            "start": first.start if first else None,
            "end": first.end if first else None,
            "spans": [asdict(span) for span in self.spans],
            "ocr": self.ocr,
        }


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    """Only the sources the answer cites, in order of first citation."""
    sources: list[Source]
    """Everything that was packed into the prompt (empty when no LLM was asked)."""
    abstained: bool
    usage: dict[str, int]
    model: str | None
    backend: str | None
    events: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_version: str = PROMPT_VERSION
    mode: str = "generative"
    """The answer mode that produced ``text``: extractive or generative."""
    fallback_reason: str | None = None
    """Why the requested mode did not answer (auto falling back, a dead LLM), else None."""
    abstain_reason: str | None = None
    groundedness: float | None = None
    """Share of the answer's sentences supported by a cited source sentence (None when unchecked)."""
    answerability: float | None = None
    sentences: list[dict[str, Any]] = field(default_factory=list)
    """Per answer sentence: text, citation numbers, supported, support score."""
    looped: bool = False
    """The loop guard stopped the generation (the text is cut before the repetition)."""


def screen_hits(hits: Sequence[Hit], policy: InjectionPolicy) -> tuple[list[Hit], list[dict[str, Any]]]:
    """Flag chunks that look like prompt injections and move them last (``down_rank``) or remove them.

    Down-ranking keeps a false positive usable when the budget allows, while packing drops the tail first.
    """
    clean: list[Hit] = []
    flagged: list[Hit] = []
    events: list[dict[str, Any]] = []
    action = "down_ranked" if policy == "down_rank" else "dropped"
    for hit in hits:
        patterns = injection_score(str(hit.payload.get("text") or ""))
        if patterns:
            flagged.append(hit)
            events.append({"type": "injection_flagged", "chunk_id": hit.id, "patterns": patterns, "action": action})
        else:
            clean.append(hit)
    return (clean + flagged if policy == "down_rank" else clean), events


def _prepare(
    llm: LLMBackend,
    question: str,
    hits: Sequence[Hit],
    max_tokens: int,
    context_window: int | None,
    injection_policy: InjectionPolicy,
    context: PromptContext,
) -> tuple[PackedPrompt, list[dict[str, Any]]]:
    ordered, events = screen_hits(hits, injection_policy)
    if not ordered:
        return PackedPrompt(messages=[], sources=[]), events
    packed = pack_prompt(
        question,
        ordered,
        llm.count_tokens,
        context_window or llm.context_window,
        max_tokens,
        history=context.history,
        instructions=context.instructions,
    )
    if context.redact:
        packed.messages, counts = redact_messages(packed.messages)
        if counts:
            events.append({"type": "prompt_redacted", "counts": counts})
    if packed.truncated:
        events.append(
            {
                "type": "context_truncated",
                "dropped": packed.dropped,
                "trimmed": packed.trimmed,
                "prompt_tokens": packed.prompt_tokens,
            }
        )
    return packed, events


def _abstain(packed: PackedPrompt, events: list[dict[str, Any]], timings: dict[str, float]) -> Answer:
    """No usable context: answering would only show what the model memorized, so it is not called."""
    events.append({"type": "no_context"})
    return Answer(
        abstain_reason="no_context",
        text=ABSTAIN_TEXT,
        citations=[],
        sources=packed.sources,
        abstained=True,
        usage={"prompt_tokens": 0, "completion_tokens": 0},
        model=None,
        backend=None,
        events=events,
        timings_ms=timings,
    )


def _finish(raw: str, packed: PackedPrompt, guard: LoopGuard, **fields: Any) -> Answer:
    if guard.looped:
        raw = cut_loop(raw)
        fields["events"].append({"type": "loop_stopped", "kept_chars": len(raw)})
    text = apply_output_filters(raw, SYSTEM_PROMPT)
    by_number = {source.number: source for source in packed.sources}
    citations = [Citation.of_source(by_number[n]) for n in cited_numbers(text, by_number.keys())]
    return Answer(
        text=text,
        citations=citations,
        sources=packed.sources,
        abstained=is_abstention(text),
        looped=guard.looped,
        **fields,
    )


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def stream_answer(
    llm: LLMBackend,
    question: str,
    hits: Sequence[Hit],
    *,
    max_tokens: int,
    temperature: float,
    context_window: int | None = None,
    injection_policy: InjectionPolicy = "down_rank",
    context: PromptContext = NO_CONTEXT,
) -> Iterator[dict[str, Any]]:
    """Yields ``{"type": "sources", "sources": [...]}`` once the prompt is packed, then
    ``{"type": "token", "text": ...}`` per piece, then ``{"type": "done", "answer": Answer}``.

    Token events carry the model's raw text; output filters and the cut of a loop apply to the final answer
    only. Closing the iterator (a client disconnected) or the loop guard firing stops generation. ``ttft``
    is measured from this call's start, so it includes prompt packing. A backend dying mid-stream raises
    ``Unavailable``.
    """
    started = time.perf_counter()
    packed, events = _prepare(llm, question, hits, max_tokens, context_window, injection_policy, context)
    timings = {"prompt": _ms(started)}
    yield {"type": "sources", "sources": packed.sources}
    if not packed.sources:
        answer = _abstain(packed, events, timings)
        yield {"type": "token", "text": answer.text}
        yield {"type": "done", "answer": answer}
        return
    generating = time.perf_counter()
    pieces = llm.stream(packed.messages, max_tokens, temperature)
    guard = LoopGuard()
    tokens = guarded(pieces, guard)
    parts: list[str] = []
    try:
        for piece in tokens:
            if not parts:
                timings["ttft"] = _ms(started)
            parts.append(piece)
            yield {"type": "token", "text": piece}
    finally:
        tokens.close()
    timings["generate"] = _ms(generating)
    raw = "".join(parts)
    backend, model = llm.name, llm.model
    if isinstance(pieces, ChainStream):
        events.extend(pieces.events)
        backend, model = pieces.backend or backend, pieces.model or model
    usage = {"prompt_tokens": packed.prompt_tokens, "completion_tokens": llm.count_tokens(raw) if raw else 0}
    answer = _finish(raw, packed, guard, usage=usage, model=model, backend=backend, events=events, timings_ms=timings)
    yield {"type": "done", "answer": answer}
