"""Several LLM backends tried in order (e.g. vLLM, then the embedded model), each behind a circuit breaker.

A breaker opens after ``failure_threshold`` consecutive failures; while open its backend is skipped at no
cost, so a dead vLLM does not add its timeout and retries to every request. After ``cooldown_s`` one trial
call is let through (half-open): success closes the breaker, failure opens it again.

Streaming: a backend that fails before its first piece of text is skipped like a failed completion. Once
text has reached the caller, switching backends would splice two different answers, so a backend dying
mid-stream raises ``Unavailable`` and the caller reports the partial answer as failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import Unavailable
from core.metrics import BACKEND_ERRORS, BACKEND_FALLBACKS
from generation.backends.base import Completion, LLMBackend, Message

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 2,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self.cooldown_s else "half_open"

    def allow(self) -> bool:
        """Whether to call the backend now; in half-open state only one caller gets the trial."""
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_running = False


@dataclass(frozen=True)
class ChainCompletion(Completion):
    """A completion plus what the chain went through to get it (failures and skipped backends)."""

    events: tuple[dict[str, Any], ...] = ()


class ChainStream(Iterator[str]):
    """Text pieces from the first backend that starts answering; ``backend``, ``model`` and ``events``
    are filled in as the stream runs, for the caller to log once it ends."""

    def __init__(self, chain: FallbackChain, messages: list[Message], max_tokens: int, temperature: float):
        self.backend: str | None = None
        self.model: str | None = None
        self.events: list[dict[str, Any]] = []
        self._pieces = chain._stream_pieces(self, messages, max_tokens, temperature)

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stops the underlying backend's generation (a client went away)."""
        self._pieces.close()


class FallbackChain:
    name = "fallback"

    def __init__(
        self,
        backends: Sequence[LLMBackend],
        failure_threshold: int = 2,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("FallbackChain needs at least one backend")
        self.backends = list(backends)
        self.breakers = [CircuitBreaker(failure_threshold, cooldown_s, clock) for _ in self.backends]
        # Prompts are packed once, before a backend is picked: they must fit the smallest window.
        self.context_window = min(backend.context_window for backend in self.backends)

    @property
    def model(self) -> str:
        return self.backends[0].model

    def _failed(self, events: list[dict[str, Any]], index: int, error: Exception, during: str) -> None:
        backend = self.backends[index]
        self.breakers[index].record_failure()
        event = {
            "type": "llm_backend_failed",
            "backend": backend.name,
            "during": during,
            "error": str(error),
            "breaker": self.breakers[index].state,
        }
        events.append(event)
        BACKEND_ERRORS.labels(backend.name).inc()
        if index + 1 < len(self.backends):
            BACKEND_FALLBACKS.labels(backend.name).inc()
        log.warning("llm backend %s failed during %s: %s", backend.name, during, error)

    def _skipped(self, events: list[dict[str, Any]], index: int) -> None:
        events.append({"type": "llm_backend_skipped", "backend": self.backends[index].name, "breaker": "open"})

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> ChainCompletion:
        events: list[dict[str, Any]] = []
        for index, backend in enumerate(self.backends):
            if not self.breakers[index].allow():
                self._skipped(events, index)
                continue
            try:
                completion = backend.complete(messages, max_tokens, temperature)
            except Exception as error:  # any failure of one backend is a reason to try the next
                self._failed(events, index, error, "complete")
                continue
            self.breakers[index].record_success()
            return ChainCompletion(
                text=completion.text,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                model=completion.model,
                backend=completion.backend,
                finish_reason=completion.finish_reason,
                events=tuple(events),
            )
        raise Unavailable(f"No LLM backend could answer: {_summary(events)}")

    def stream(self, messages: list[Message], max_tokens: int, temperature: float) -> ChainStream:
        return ChainStream(self, messages, max_tokens, temperature)

    def _stream_pieces(
        self, into: ChainStream, messages: list[Message], max_tokens: int, temperature: float
    ) -> Iterator[str]:
        for index, backend in enumerate(self.backends):
            if not self.breakers[index].allow():
                self._skipped(into.events, index)
                continue
            pieces: Iterator[str] | None = None
            try:
                try:
                    pieces = backend.stream(messages, max_tokens, temperature)
                    first = next(pieces, "")
                except Exception as error:
                    self._failed(into.events, index, error, "stream start")
                    continue
                self.breakers[index].record_success()
                into.backend, into.model = backend.name, backend.model
                if first:
                    yield first
                try:
                    yield from pieces
                except Exception as error:
                    self._failed(into.events, index, error, "stream")
                    raise Unavailable(f"LLM backend {backend.name} died mid-stream: {error}") from error
                return
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
        raise Unavailable(f"No LLM backend could answer: {_summary(into.events)}")

    def count_tokens(self, text: str) -> int:
        """By the first backend that is not known to be down (its tokenizer is the likeliest to be used)."""
        events: list[dict[str, Any]] = []
        for index, backend in enumerate(self.backends):
            if self.breakers[index].state == "open":
                continue
            try:
                return backend.count_tokens(text)
            except Exception as error:
                self._failed(events, index, error, "count_tokens")
        raise Unavailable(f"No LLM backend could count tokens: {_summary(events)}")


def _summary(events: list[dict[str, Any]]) -> str:
    return "; ".join(f"{event['backend']}: {event.get('error', 'circuit open')}" for event in events) or "none"
