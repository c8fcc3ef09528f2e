"""Cross-encoder reranking with sentence-transformers: scores (query, chunk) pairs jointly.

The model loads in the constructor, not on first query: a wrong name or path should stop the
server at start with a message naming the model, not fail the first user's query.
"""

from __future__ import annotations

from core.config import Settings
from core.types import Hit
from retrieval.embedding import best_device
from retrieval.rerank import Reranker


class CrossEncoderReranker:
    def __init__(self, model: str, device: str | None = None, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        from sentence_transformers import CrossEncoder

        try:
            self._model = CrossEncoder(model, device=best_device(device))
        except Exception as exc:  # the library raises OSError, ValueError or HF errors by case
            raise ValueError(f"cannot load reranker model {model!r}: {exc}") from exc
        self.name = model
        self._batch_size = batch_size

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """Raw model scores for (query, text) pairs, in input order."""
        if not texts:
            return []
        predicted = self._model.predict(
            [(query, text) for text in texts],
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(score) for score in predicted]

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Hits re-scored by the cross-encoder, best first; equal scores keep their incoming order."""
        scores = self.scores(query, [str(hit.payload.get("text", "")) for hit in hits])
        rescored = [Hit(id=hit.id, score=score, payload=hit.payload) for hit, score in zip(hits, scores, strict=True)]
        return sorted(rescored, key=lambda hit: -hit.score)


def make_reranker(settings: Settings) -> Reranker | None:
    """The configured reranker, or None when ``RAG_RERANKER_MODEL`` is unset (reranking off)."""
    if not settings.reranker_model:
        return None
    return CrossEncoderReranker(
        settings.reranker_model, device=settings.embedding_device, batch_size=settings.rerank_batch_size
    )
