"""The LLM-backend Protocol shared by llama.cpp, OpenAI-compatible servers and the fallback chain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    backend: str
    finish_reason: str | None = None


class LLMBackend(Protocol):
    name: str
    model: str
    context_window: int

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> Completion: ...

    def stream(self, messages: list[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield text pieces as the model produces them."""

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the served model's own tokenizer."""
