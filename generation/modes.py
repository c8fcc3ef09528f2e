"""Answer modes: how a question, its hits and their evidence become the answer. One Protocol, a registry.

- ``extractive``: the selected evidence sentences in reading order, each followed by its ``[n]``. No LLM;
  every sentence is a quote, so groundedness is 1 by construction.
- ``generative``: the LLM's draft (loop-guarded), then verified sentence by sentence: citations the model
  forgot are attached, unsupported sentences are marked, groundedness is reported.
- ``auto``: generative, falling back to extractive when the draft loops, is empty, declines although the
  evidence holds an answer, or is less grounded than ``min_groundedness``.

Before any mode runs, ``answer_events`` abstains when there is no evidence or its answerability is below
the calibrated threshold, so an unanswerable question never costs a generation. Every mode yields the
same events: ``token`` pieces, ``reset`` when already streamed text is being replaced (auto falling back
mid-stream), then ``done`` with the ``Answer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from core.errors import BadInput, Unavailable
from core.tracing import flat_attributes, start_span, traced_steps
from core.types import Hit
from generation.answer import NO_CONTEXT, Answer, Citation, PromptContext, Span, stream_answer
from generation.backends.base import LLMBackend
from generation.evidence import Candidate, Evidence, SentenceEncoder
from generation.prompt import ABSTAIN_TEXT
from generation.verify import check_sentences, groundedness, render_checked

Event = dict[str, Any]


@dataclass(frozen=True)
class AnswerPolicy:
    abstain_threshold: float
    """Answerability (best evidence cosine) below which the answer is an abstention."""
    support_threshold: float
    """Support an answer sentence needs from a source sentence to count as grounded."""
    min_groundedness: float
    """auto: a draft less grounded than this is replaced by the extractive answer."""
    fallback_on_unavailable: bool
    """generative/auto: answer extractively when every LLM backend is down (else the error propagates)."""


@dataclass(frozen=True)
class GenerationOptions:
    max_tokens: int
    temperature: float
    context_window: int | None = None


@dataclass
class AnswerInputs:
    question: str
    """What the LLM answers (in a conversation: the follow-up as asked)."""
    hits: list[Hit]
    evidence: Evidence
    encoder: SentenceEncoder
    policy: AnswerPolicy
    generation: GenerationOptions
    llm: LLMBackend | None = None
    context: PromptContext = NO_CONTEXT
    timings_ms: dict[str, float] = field(default_factory=dict)


class AnswerMode(Protocol):
    name: str

    def events(self, inputs: AnswerInputs) -> Iterator[Event]:
        """``token`` pieces, maybe a ``reset``, then ``done`` with the ``Answer``."""
        ...


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _citation_of(candidate: Candidate, number: int) -> Citation:
    passage = candidate.passage
    return Citation(
        number,
        passage.chunk_id,
        passage.document_id,
        passage.filename,
        passage.page,
        passage.text,
        passage.score,
        ocr=passage.ocr,
    )


def _span(candidate: Candidate) -> Span:
    return Span(candidate.sentence.start, candidate.sentence.end, candidate.sentence.text)


def _add_span(citations: dict[int, Citation], candidate: Candidate, number: int) -> None:
    citation = citations.setdefault(number, _citation_of(candidate, number))
    span = _span(candidate)
    if span not in citation.spans:
        citation.spans.append(span)


def abstention(reason: str, mode: str, evidence: Evidence, timings_ms: dict[str, float]) -> Answer:
    return Answer(
        text=ABSTAIN_TEXT,
        citations=[],
        sources=[],
        abstained=True,
        usage={"prompt_tokens": 0, "completion_tokens": 0},
        model=None,
        backend=None,
        events=[{"type": "abstained", "reason": reason, "answerability": round(evidence.answerability, 4)}],
        timings_ms=timings_ms,
        mode=mode,
        abstain_reason=reason,
        answerability=evidence.answerability if evidence.candidates else None,
    )


def extractive_answer(evidence: Evidence, timings_ms: dict[str, float]) -> Answer:
    """The selected sentences in reading order; sources numbered by first appearance."""
    started = time.perf_counter()
    numbers: dict[str, int] = {}
    citations: dict[int, Citation] = {}
    parts: list[str] = []
    sentences: list[dict[str, Any]] = []
    for candidate in evidence.selected:
        number = numbers.setdefault(candidate.passage.chunk_id, len(numbers) + 1)
        _add_span(citations, candidate, number)
        parts.append(f"{candidate.text} [{number}]")
        sentences.append(
            {"text": candidate.text, "citations": [number], "supported": True, "support": round(candidate.score, 4)}
        )
    timings = {**timings_ms, "compose": _ms(started)}
    return Answer(
        text=" ".join(parts),
        citations=list(citations.values()),
        sources=[],
        abstained=False,
        usage={"prompt_tokens": 0, "completion_tokens": 0},
        model=None,
        backend=None,
        timings_ms=timings,
        mode="extractive",
        groundedness=1.0 if parts else None,
        answerability=evidence.answerability,
        sentences=sentences,
    )


def _stream_text(answer: Answer) -> Iterator[Event]:
    """An answer written at once, streamed as one ``token`` event per sentence."""
    if not answer.sentences:
        yield {"type": "token", "text": answer.text}
        return
    for index, sentence in enumerate(answer.sentences):
        markers = "".join(f" [{n}]" for n in sentence["citations"])
        yield {"type": "token", "text": f"{' ' if index else ''}{sentence['text']}{markers}"}


class ExtractiveMode:
    name = "extractive"

    def events(self, inputs: AnswerInputs) -> Iterator[Event]:
        answer = extractive_answer(inputs.evidence, inputs.timings_ms)
        yield from _stream_text(answer)
        yield {"type": "done", "answer": answer}


def _numbering(draft: Answer, evidence: Evidence) -> Callable[[Candidate], int]:
    """Prompt sources keep the number the model saw; evidence from other chunks (neighbours of the hits)
    gets the numbers after them, in evidence order."""
    numbers = {source.chunk_id: source.number for source in draft.sources}
    for candidate in evidence.candidates:
        numbers.setdefault(candidate.passage.chunk_id, len(numbers) + 1)
    return lambda candidate: numbers[candidate.passage.chunk_id]


def verify_draft(draft: Answer, inputs: AnswerInputs) -> Answer:
    """The draft with verified citations, per-sentence support and groundedness; declines stay declines."""
    started = time.perf_counter()
    if draft.abstained:
        return replace(
            draft, abstain_reason=draft.abstain_reason or "model", answerability=inputs.evidence.answerability
        )
    number_of = _numbering(draft, inputs.evidence)
    checks = check_sentences(
        draft.text,
        inputs.evidence,
        inputs.encoder,
        number_of,
        inputs.policy.support_threshold,
        [source.number for source in draft.sources],
    )
    citations: dict[int, Citation] = {}
    for check in checks:
        if check.evidence is not None:
            _add_span(citations, check.evidence, check.numbers[0])
    attached = sum(1 for c in checks if c.supported) - sum(1 for c in draft.citations if c.number in citations)
    events = list(draft.events)
    unsupported = sum(1 for c in checks if not c.supported)
    events.append(
        {"type": "verified", "sentences": len(checks), "unsupported": unsupported, "attached": max(0, attached)}
    )
    return replace(
        draft,
        text=render_checked(checks) if checks else draft.text,
        citations=sorted(citations.values(), key=lambda c: c.number),
        groundedness=groundedness(checks),
        answerability=inputs.evidence.answerability,
        sentences=[
            {"text": c.text, "citations": list(c.numbers), "supported": c.supported, "support": round(c.support, 4)}
            for c in checks
        ],
        events=events,
        timings_ms={**draft.timings_ms, "verify": _ms(started)},
    )


@dataclass
class _Draft:
    """What a generation attempt left: its answer (None when the LLM failed) and whether text was streamed."""

    answer: Answer | None = None
    streamed: bool = False
    error: Unavailable | None = None


def generation_attributes(answer: Answer) -> dict[str, Any]:
    """What the LLM span keeps: the backend that answered (after any fallback), tokens and timings."""
    llm = {"backend": answer.backend, "model": answer.model}
    return flat_attributes({"llm": llm, "usage": answer.usage, "timings_ms": answer.timings_ms})


def _generate(inputs: AnswerInputs, llm: LLMBackend, into: _Draft) -> Iterator[Event]:
    """The LLM's draft under its own ``rag.generate`` span (a child of the answer's)."""
    options = inputs.generation
    generating = start_span("rag.generate", **{"rag.llm.backend": llm.name, "rag.llm.model": llm.model})
    steps = stream_answer(
        llm,
        inputs.question,
        inputs.hits,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        context_window=options.context_window,
        context=inputs.context,
    )
    try:
        for event in traced_steps(steps, generating):
            if event["type"] == "token":
                into.streamed = True
                yield event
            elif event["type"] == "done":
                into.answer = event["answer"]
                generating.set_attributes(generation_attributes(event["answer"]))
    except Unavailable as error:
        if not inputs.policy.fallback_on_unavailable:
            raise
        into.error = error


def _fallback(inputs: AnswerInputs, draft: _Draft, reason: str) -> Iterator[Event]:
    """The extractive answer in place of a draft; the draft's cost and events stay on the record."""
    if draft.streamed:
        yield {"type": "reset", "reason": reason}
    answer = extractive_answer(inputs.evidence, inputs.timings_ms)
    if draft.answer is not None:
        attempt = draft.answer
        answer = replace(
            answer,
            usage=attempt.usage,
            model=attempt.model,
            backend=attempt.backend,
            events=[*attempt.events, {"type": "answer_fallback", "reason": reason}],
            timings_ms={**attempt.timings_ms, **answer.timings_ms},
        )
    else:
        unavailable = [{"type": "generation_unavailable", "detail": draft.error.message}] if draft.error else []
        answer = replace(
            answer,
            backend="retrieval_only" if draft.error else None,
            events=[*unavailable, {"type": "answer_fallback", "reason": reason}],
        )
    answer = replace(answer, fallback_reason=reason)
    yield from _stream_text(answer)
    yield {"type": "done", "answer": answer}


def _require(llm: LLMBackend | None, mode: str) -> LLMBackend:
    if llm is None:
        raise BadInput(
            f'answer_mode "{mode}" needs an LLM, and this deployment has none (RAG_LLM_BACKEND=none); use "extractive".'
        )
    return llm


class GenerativeMode:
    name = "generative"

    def events(self, inputs: AnswerInputs) -> Iterator[Event]:
        draft = _Draft()
        yield from _generate(inputs, _require(inputs.llm, self.name), draft)
        if draft.answer is None:
            yield from _fallback(inputs, draft, "llm_unavailable")
            return
        yield {"type": "done", "answer": verify_draft(draft.answer, inputs)}


def fallback_reason(answer: Answer, min_groundedness: float) -> str | None:
    """Why auto should not return this verified draft, or None when it should."""
    if answer.looped:
        return "loop"
    if answer.abstained:
        return "model_abstained"
    if not answer.text.strip():
        return "empty"
    if answer.groundedness is None or answer.groundedness < min_groundedness:
        return "unsupported"
    return None


class AutoMode:
    name = "auto"

    def events(self, inputs: AnswerInputs) -> Iterator[Event]:
        draft = _Draft()
        if inputs.llm is not None:
            yield from _generate(inputs, inputs.llm, draft)
        if draft.answer is None:
            yield from _fallback(inputs, draft, "llm_unavailable" if inputs.llm is not None else "no_llm")
            return
        verified = verify_draft(draft.answer, inputs)
        reason = fallback_reason(verified, inputs.policy.min_groundedness)
        if reason is None:
            yield {"type": "done", "answer": verified}
            return
        draft.answer = verified
        yield from _fallback(inputs, draft, reason)


ANSWER_MODES: dict[str, AnswerMode] = {mode.name: mode for mode in (ExtractiveMode(), GenerativeMode(), AutoMode())}


def answer_mode(name: str) -> AnswerMode:
    try:
        return ANSWER_MODES[name]
    except KeyError:
        raise BadInput(f"unknown answer_mode {name!r}; use one of {', '.join(ANSWER_MODES)}") from None


def answer_events(mode: AnswerMode, inputs: AnswerInputs) -> Iterator[Event]:
    """The evidence gate, then the mode. An abstention streams its text as one token."""
    evidence = inputs.evidence
    reason = None
    if not evidence.candidates:
        reason = "no_context"
    elif evidence.answerability < inputs.policy.abstain_threshold:
        reason = "low_evidence"
    if reason is not None:
        answer = abstention(reason, mode.name, evidence, inputs.timings_ms)
        yield {"type": "token", "text": answer.text}
        yield {"type": "done", "answer": answer}
        return
    yield from mode.events(inputs)


def final_answer(events: Iterator[Event]) -> Answer:
    """Drains a mode's events (the non-streaming path) and returns the answer."""
    for event in events:
        if event["type"] == "done":
            return event["answer"]
    raise AssertionError("an answer mode always ends with a done event")
