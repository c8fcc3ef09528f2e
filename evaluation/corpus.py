"""How the platform's documents and chunks map back to an eval set's document ids."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from evaluation.metrics import doc_ranking

VECTOR_BUILD_TIMEOUT_S = 1800.0


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


def wait_for_vector_builds(
    awaiting: Callable[[], int], progress: bool, timeout_s: float = VECTOR_BUILD_TIMEOUT_S
) -> dict[str, Any]:
    """Waits until vector searches skip no chunk of the collection (``awaiting`` returns 0). After a bulk load into
    a large embedded collection the loaded chunks are vector-searchable only once their HNSW build lands
    (``RAG_EDGE_INDEXED_ONLY_MIN_COVERAGE``); an eval scores the collection as it serves once that is done.
    Returns the seconds waited and the chunks still waiting (0 unless ``timeout_s`` ran out), for the summary."""
    started = time.perf_counter()
    waiting = first = awaiting()
    with tqdm(total=first, desc="vector index build", unit="chunk", disable=not progress or first == 0) as bar:
        while waiting and time.perf_counter() - started < timeout_s:
            time.sleep(0.5)
            waiting = awaiting()
            bar.update(max(0, first - waiting) - bar.n)
    return {"vector_build_wait_s": round(time.perf_counter() - started, 1), "vectors_awaiting_build": waiting}
