"""The reranker Protocol and its CrossEncoder implementation."""

from __future__ import annotations

from typing import Protocol

from core.types import Hit


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Re-score ``hits`` (each payload carries ``text``) and return them best first."""

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """Raw relevance of each (query, text) pair, in input order (the answer's evidence scoring uses it)."""
