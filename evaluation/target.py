"""What an eval run needs from the platform, whether it runs in this process or behind a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from evaluation.answer_metrics import Encode
from evaluation.corpus import Corpus
from evaluation.datasets import EvalDataset
from generation.query_types import QueryRequest, QueryResult


class EvalTarget(Protocol):
    def ingest(self, dataset: EvalDataset, collection: str, batch_size: int, progress: bool) -> Corpus:
        """Upload every corpus document (same bytes = same document), index those not indexed yet, and map
        the platform's documents and chunks to the dataset's ids."""
        ...

    def query(self, collection: str, request: QueryRequest) -> QueryResult:
        """One query through the platform's query path; ``hits`` holds the final ranking."""
        ...

    def default_answer_mode(self) -> str:
        """The answer mode used when the run names none (the platform's RAG_ANSWER_MODE)."""
        ...

    def has_llm(self) -> bool: ...

    def encoder(self) -> Encode | None:
        """Embeds answers and references for the similarity score; None = not scored."""
        ...

    def judge(self, answer: str, sources: Sequence[str]) -> bool | None:
        """LLM-as-judge faithfulness of an answer to its sources; None = no judge here."""
        ...

    def settings_snapshot(self, generate: bool) -> dict[str, Any]:
        """The settings that produced the figures."""
        ...
