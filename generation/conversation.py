"""Conversations: follow-ups rewritten into standalone queries, history compressed into a budget.

State lives in SQL. Recent turns go into the prompt verbatim; once a turn ages out of the recent window
it is folded into the stored summary exactly once (``summarized_turns`` counts them), so no turn is ever
summarized twice. Rewriting and summarizing use the LLM backend when there is one and fall back to
deterministic rules when it is off or returns something unusable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.collections import get_collection
from core.db import Database
from core.errors import NotFound, Unavailable
from core.models import Collection, Conversation, Memory, Turn
from generation.answer import PromptContext
from generation.backends.base import LLMBackend, Message
from generation.query_service import QueryService
from generation.query_types import QueryRequest, QueryResult
from retrieval.text_analysis import tokenize

log = logging.getLogger(__name__)

TURN_OVERHEAD_TOKENS = 16


class PastTurn(Protocol):
    """A turn as rewriting and history fitting read it: a stored ``Turn``, or an ``Exchange`` a client sent."""

    question: str
    answer: str | None
    rewritten_query: str | None


@dataclass(frozen=True)
class Exchange:
    """A past question and answer of a conversation the client keeps itself (OpenAI-style chat)."""

    question: str
    answer: str | None
    rewritten_query: str | None


@dataclass(frozen=True)
class Transcript:
    """A whole conversation sent by a client that keeps it: earlier (question, answer) pairs, the new
    question, and the client's own standing instructions (its system messages)."""

    question: str
    turns: Sequence[tuple[str, str | None]] = ()
    instructions: str | None = None


def exchanges(pairs: Sequence[tuple[str, str | None]]) -> list[Exchange]:
    """Client-held turns with the standalone query of each chained by the deterministic rewrite, as a stored
    conversation answered without the LLM rewriter holds them (no LLM call per past turn)."""
    out: list[Exchange] = []
    previous: str | None = None
    for question, answer in pairs:
        previous = fallback_rewrite(previous, question)
        out.append(Exchange(question, answer, previous))
    return out


@dataclass(frozen=True)
class History:
    """What the prompt gets of the past: the stored summary and the recent turns, within a token budget."""

    summary: str | None
    turns: list[tuple[str, str]]
    dropped_turns: int = 0

    def messages(self) -> list[Message]:
        out: list[Message] = []
        if self.summary:
            out.append({"role": "system", "content": f"Summary of the earlier conversation: {self.summary}"})
        for question, answer in self.turns:
            out += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return out


@dataclass
class TurnPlan:
    """Everything decided before retrieval: the standalone query, the history, the events to log."""

    conversation: Conversation
    collection: str
    ordinal: int
    question: str
    query: str
    method: str
    context: PromptContext
    events: list[dict[str, Any]] = field(default_factory=list)


def content_words(text: str) -> set[str]:
    """Stemmed words without stopwords: the BM25 analyzer's view of the text."""
    return set(tokenize(text))


FALLBACK_CARRY_WORDS = 40


def fallback_rewrite(previous_query: str | None, question: str) -> str:
    """The deterministic rewrite: the previous turn's standalone query gives the follow-up its subject.

    Carrying the previous *rewritten* query (not its raw question) keeps a subject named three turns ago;
    its first words are kept, where the subject usually is, so queries do not grow without bound.
    """
    if not previous_query:
        return question
    return f"{' '.join(previous_query.split()[:FALLBACK_CARRY_WORDS])} {question}"


def usable_rewrite(candidate: str, history_text: str, question: str) -> bool:
    """An LLM rewrite must be one short line that keeps words of both the follow-up and the history."""
    candidate = candidate.strip()
    if not candidate or len(candidate) > 400 or "\n" in candidate:
        return False
    words = content_words(candidate)
    return bool(words & content_words(question)) and bool(words & content_words(history_text))


def rewrite_query(llm: LLMBackend | None, turns: Sequence[PastTurn], question: str) -> tuple[str, str]:
    """Returns (standalone query, method) with method ``none``, ``llm`` or ``fallback``."""
    if not turns:
        return question, "none"
    if llm is not None:
        history_text = " ".join(f"Q: {t.question} A: {t.answer or ''}" for t in turns[-2:])
        prompt = [
            {"role": "system", "content": "Rewrite the follow-up as one standalone question. Reply with it only."},
            {"role": "user", "content": f"Conversation: {history_text}\nFollow-up: {question}\nStandalone question:"},
        ]
        try:
            candidate = llm.complete(prompt, max_tokens=48, temperature=0.0).text.strip().strip('"')
        except Unavailable:
            candidate = ""
        if usable_rewrite(candidate, history_text, question):
            return candidate, "llm"
    return fallback_rewrite(turns[-1].rewritten_query, question), "fallback"


def fallback_summary(previous: str | None, turns: list[Turn]) -> str:
    """Keeps each aged turn's question and the first sentence of its answer."""
    parts = [previous] if previous else []
    for turn in turns:
        first = re.split(r"(?<=[.!?])\s", (turn.answer or "").strip(), maxsplit=1)[0][:200]
        parts.append(f"Asked: {turn.question} Answered: {first}".strip())
    return " ".join(parts)


def summarize(llm: LLMBackend | None, previous: str | None, turns: list[Turn]) -> str:
    fallback = fallback_summary(previous, turns)
    if llm is None:
        return fallback
    prompt = [
        {"role": "system", "content": "Summarize this conversation in at most three sentences."},
        {"role": "user", "content": fallback},
    ]
    try:
        text = llm.complete(prompt, max_tokens=96, temperature=0.0).text.strip()
    except Unavailable:
        return fallback
    return text if text and len(text) < len(fallback) * 2 else fallback


def fit_history(
    summary: str | None, turns: Sequence[PastTurn], count_tokens: Callable[[str], int], budget: int
) -> History:
    """Newest turns first until the budget is spent; a summary that alone overflows is cut."""
    used = count_tokens(summary) if summary else 0
    if summary and used > budget:
        summary, used = summary[: budget * 3], budget
    kept: list[tuple[str, str]] = []
    for turn in reversed(turns):
        cost = count_tokens(turn.question) + count_tokens(turn.answer or "") + TURN_OVERHEAD_TOKENS
        if used + cost > budget:
            break
        kept.insert(0, (turn.question, turn.answer or ""))
        used += cost
    return History(summary=summary, turns=kept, dropped_turns=len(turns) - len(kept))


def preferences_of(db: Database, owner: str) -> dict[str, str]:
    with db.session() as session:
        rows = session.scalars(select(Memory).where(Memory.owner == owner).order_by(Memory.key))
        return {m.key: m.value for m in rows}


def preference_instruction(preferences: dict[str, str]) -> str | None:
    if not preferences:
        return None
    listed = "; ".join(f"{k}: {v}" for k, v in preferences.items())
    return f"User preferences (apply them to the form of the answer): {listed}"


def set_memory(db: Database, owner: str, key: str, value: str) -> None:
    with db.session() as session:
        row = session.scalar(select(Memory).where(Memory.owner == owner, Memory.key == key))
        if row is None:
            session.add(Memory(owner=owner, key=key, value=value))
        else:
            row.value = value


def delete_memory(db: Database, owner: str, key: str | None = None) -> int:
    """Delete one preference, or all of them when ``key`` is None. Returns how many were removed."""
    with db.session() as session:
        where = [Memory.owner == owner] + ([Memory.key == key] if key is not None else [])
        rows = session.scalars(select(Memory).where(*where)).all()
        for row in rows:
            session.delete(row)
        return len(rows)


def gone(conversation_id: str) -> NotFound:
    return NotFound(f"Conversation {conversation_id!r} does not exist (it was deleted).")


class ConversationService:
    def __init__(self, db: Database, queries: QueryService) -> None:
        self.db = db
        self.queries = queries
        self.settings = queries.settings

    def start(self, collection_name: str, owner: str) -> Conversation:
        collection = get_collection(self.db, collection_name)
        with self.db.session() as session:
            conversation = Conversation(collection_id=collection.id, owner=owner)
            session.add(conversation)
        return conversation

    def get(self, conversation_id: str, owner: str | None) -> tuple[Conversation, str, list[Turn]]:
        """``owner`` None = anyone's (admins); someone else's conversation is reported missing."""
        with self.db.session() as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None or (owner is not None and conversation.owner != owner):
                raise NotFound(f"Conversation {conversation_id!r} does not exist.")
            collection = session.get(Collection, conversation.collection_id)
            if collection is None:  # its collection was deleted since the row was read
                raise gone(conversation_id)
            turns = session.scalars(
                select(Turn).where(Turn.conversation_id == conversation_id).order_by(Turn.ordinal)
            ).all()
            return conversation, collection.name, list(turns)

    def delete(self, conversation_id: str, owner: str | None) -> None:
        conversation, _, _ = self.get(conversation_id, owner)
        with self.db.session() as session:
            row = session.get(Conversation, conversation.id)
            if row is not None:
                session.delete(row)

    def _compress(self, conversation: Conversation, turns: list[Turn]) -> tuple[str | None, list[Turn], list[dict]]:
        """Fold turns that left the recent window into the stored summary, each turn once, ever."""
        start = conversation.summarized_turns
        aged = turns[start : max(len(turns) - self.settings.history_recent_turns, start)]
        if not aged:
            return conversation.summary, turns[start:], []
        summary = summarize(self.queries.llm, conversation.summary, aged)
        with self.db.session() as session:
            row = session.get(Conversation, conversation.id)
            if row is None:
                raise gone(conversation.id)
            row.summary = summary
            row.summarized_turns = start + len(aged)
        return summary, turns[start + len(aged) :], [{"type": "history_summarized", "turns": len(aged)}]

    def history_budget(self) -> int:
        s = self.settings
        return int((s.llm_context_window - s.llm_max_tokens) * s.history_budget_share)

    def plan(self, conversation_id: str, owner: str | None, question: str) -> TurnPlan:
        conversation, collection, turns = self.get(conversation_id, owner)
        llm = self.queries.llm
        query, method = rewrite_query(llm if self.settings.rewrite_with_llm else None, turns, question)
        summary, recent, events = self._compress(conversation, turns)
        context = self._context(summary, recent, conversation.owner, None, events)
        events.append({"type": "query_rewritten", "method": method, "query": query})
        return TurnPlan(conversation, collection, len(turns), question, query, method, context, events)

    def _context(
        self,
        summary: str | None,
        turns: Sequence[PastTurn],
        owner: str,
        instructions: str | None,
        events: list[dict[str, Any]],
    ) -> PromptContext:
        """The history that fits the budget (a ``history_truncated`` event when turns are left out), the
        owner's preferences and the client's own instructions."""
        budget = self.history_budget()
        history = fit_history(summary, turns, self.queries.count_tokens, budget)
        if history.dropped_turns:
            events.append({"type": "history_truncated", "dropped_turns": history.dropped_turns, "budget": budget})
        preferences = preference_instruction(preferences_of(self.db, owner))
        return PromptContext(
            history=history.messages(),
            instructions="\n".join(part for part in (instructions, preferences) if part) or None,
        )

    def plan_transcript(self, owner: str, transcript: Transcript) -> tuple[str, PromptContext, list[dict[str, Any]]]:
        """The standalone query, the prompt context and the events of a client-held conversation's next turn:
        the same rewriting and history fitting as a stored conversation, with nothing stored."""
        turns = exchanges(transcript.turns)
        llm = self.queries.llm if self.settings.rewrite_with_llm else None
        query, method = rewrite_query(llm, turns, transcript.question)
        events: list[dict[str, Any]] = []
        context = self._context(None, turns, owner, transcript.instructions, events)
        events.append({"type": "query_rewritten", "method": method, "query": query})
        return query, context, events

    def _transcript_request(self, transcript: Transcript, query: str, request: QueryRequest) -> QueryRequest:
        """A first question without instructions is answered like a plain query (cache included); history or
        instructions shape the answer, so such a turn is never cached."""
        alone = not transcript.turns and transcript.instructions is None
        return replace(request, query=query, use_cache=request.use_cache and alone)

    def ask_transcript(self, collection: str, owner: str, transcript: Transcript, request: QueryRequest) -> QueryResult:
        query, context, events = self.plan_transcript(owner, transcript)
        ask = self._transcript_request(transcript, query, request)
        return self.queries.query(collection, ask, question=transcript.question, context=context, events=events)

    def stream_transcript(
        self, collection: str, owner: str, transcript: Transcript, request: QueryRequest
    ) -> Iterator[dict[str, Any]]:
        query, context, events = self.plan_transcript(owner, transcript)
        ask = self._transcript_request(transcript, query, request)
        return self.queries.stream(collection, ask, question=transcript.question, context=context, events=events)

    def _save_turn(self, plan: TurnPlan, result: QueryResult) -> Turn:
        """The conversation row is locked before the turn is written, so a DELETE that raced the answer
        ends this request with 404 (the turn is not kept), never with a foreign-key error."""
        try:
            return self._insert_turn(plan, result)
        except IntegrityError as exc:  # the conversation row went away between the lock and the commit
            raise gone(plan.conversation.id) from exc

    def _insert_turn(self, plan: TurnPlan, result: QueryResult) -> Turn:
        with self.db.session() as session:
            row = session.get(Conversation, plan.conversation.id, with_for_update=True)
            if row is None:
                raise gone(plan.conversation.id)
            row.updated_at = datetime.now(UTC)
            turn = Turn(
                conversation_id=plan.conversation.id,
                ordinal=plan.ordinal,
                question=plan.question,
                rewritten_query=plan.query,
                rewrite_method=plan.method,
                answer=result.answer,
                citations=[{k: v for k, v in c.items() if k != "text"} for c in result.citations],
                query_id=result.query_id,
            )
            session.add(turn)
        return turn

    def _request(self, plan: TurnPlan, request: QueryRequest) -> QueryRequest:
        return replace(request, query=plan.query, use_cache=False)

    def ask(
        self, conversation_id: str, owner: str | None, question: str, request: QueryRequest
    ) -> tuple[Turn, QueryResult]:
        plan = self.plan(conversation_id, owner, question)
        result = self.queries.query(
            plan.collection, self._request(plan, request), question=question, context=plan.context, events=plan.events
        )
        return self._save_turn(plan, result), result

    def stream(self, conversation_id: str, owner: str | None, question: str, request: QueryRequest) -> Iterator[dict]:
        plan = self.plan(conversation_id, owner, question)
        events = self.queries.stream(
            plan.collection, self._request(plan, request), question=question, context=plan.context, events=plan.events
        )

        def relay() -> Iterator[dict[str, Any]]:
            for event in events:
                if event["type"] == "done":
                    known = {k: v for k, v in event.items() if k in QueryResult.__dataclass_fields__}
                    try:
                        turn = self._save_turn(plan, QueryResult(**known))
                    except NotFound as exc:  # deleted while streaming: the stream ends with an error event
                        yield {"type": "error", "status": exc.status_code, "detail": exc.message}
                        return
                    event = {**event, "conversation_id": plan.conversation.id, "turn": turn.ordinal}
                yield event

        return relay()
