"""How the platform's documents and chunks map back to an eval set's document ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from evaluation.metrics import doc_ranking


@dataclass
class Corpus:
    """How platform documents and chunks map back to the dataset's document ids."""

    doc_to_dataset: dict[str, list[str]]
    chunk_to_doc: dict[str, str]
    summary: dict[str, Any]

    def ranking(self, chunk_ids: Iterable[str]) -> list[str]:
        return doc_ranking(chunk_ids, self.chunk_to_doc, self.doc_to_dataset)

    def cited_id(self, document_id: str | None, gold: Iterable[str]) -> str:
        """The dataset id a cited chunk counts as: a gold one when its upload stands for several."""
        candidates = self.doc_to_dataset.get(document_id or "", [document_id or ""])
        gold_set = set(gold)
        return next((c for c in candidates if c in gold_set), candidates[0])
