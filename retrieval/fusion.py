"""Rank fusion: combine best-first result lists from different searches into one ranking.

Pure functions over ids and scores so the retriever, evaluations and tests share one definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _check_weights(n_lists: int, weights: Sequence[float] | None) -> Sequence[float]:
    if weights is None:
        return [1.0] * n_lists
    if len(weights) != n_lists:
        raise ValueError(f"got {len(weights)} weights for {n_lists} lists")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    return weights


def _sorted_by_score(scores: dict[str, float]) -> list[tuple[str, float]]:
    # dicts keep insertion order and sorted() is stable, so equal scores keep first-appearance order.
    return sorted(scores.items(), key=lambda item: -item[1])


def rrf(
    ranked: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Weighted reciprocal-rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1.

    RRF uses ranks only, so lists whose scores live on different scales (cosine vs BM25) fuse
    without calibration. Ties keep the order in which ids first appear (list by list), which makes
    the output deterministic. A repeated id within one list counts at its best rank only.
    """
    if k < 0:
        raise ValueError("k must not be negative")
    ws = _check_weights(len(ranked), weights)
    scores: dict[str, float] = {}
    for ids, weight in zip(ranked, ws, strict=True):
        seen: set[str] = set()
        for rank, doc_id in enumerate(ids, start=1):
            if doc_id in seen:
                continue
            seen.add(doc_id)
            scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank)
    return _sorted_by_score(scores)


def _min_max(scored: Sequence[tuple[str, float]]) -> dict[str, float]:
    if not scored:
        return {}
    values = [score for _, score in scored]
    low, high = min(values), max(values)
    normalized: dict[str, float] = {}
    for doc_id, score in scored:
        # One distinct score carries no ordering information, so every member then counts fully.
        normalized.setdefault(doc_id, 1.0 if high == low else (score - low) / (high - low))
    return normalized


def convex(
    scored: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Convex combination of min-max normalized scores: sum_i w_i * norm_i(d).

    Unlike RRF it keeps score gaps (a clear winner stays clear); an id missing from a list gets 0
    from that list. Ties keep first-appearance order.
    """
    ws = _check_weights(len(scored), weights)
    fused: dict[str, float] = {}
    for pairs, weight in zip(scored, ws, strict=True):
        for doc_id, norm in _min_max(pairs).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + weight * norm
    return _sorted_by_score(fused)


def best_per_document(scored: Sequence[tuple[str, float]], document_of: Mapping[str, str]) -> list[tuple[str, float]]:
    """A best-first chunk list as a best-first document list: each document at its best chunk's score."""
    seen: dict[str, float] = {}
    for chunk, score in scored:
        seen.setdefault(document_of[chunk], score)
    return list(seen.items())


def documents_first(
    chunk_ranking: Sequence[tuple[str, float]],
    document_ranking: Sequence[tuple[str, float]],
    document_of: Mapping[str, str],
) -> list[tuple[str, float]]:
    """Each document's best chunk (by ``chunk_ranking``) at its place in ``document_ranking``, scored with the
    document's fused score; then every other chunk in ``chunk_ranking`` order with its own score.

    Fusing documents combines a document's best vector chunk with its best keyword chunk even when they
    are different chunks, which chunk-level fusion cannot (SciFact test nDCG@10 0.7357 vs 0.7317,
    bench/tune_retrieval.py). The top of the list is one chunk per document (diverse sources for the
    prompt); a collection of one long document still gets its best chunks, in chunk order, after the first.
    The two parts' scores are on different scales (document vs chunk fusion): the order is the ranking.
    """
    representative: dict[str, str] = {}
    for chunk, _ in chunk_ranking:
        representative.setdefault(document_of[chunk], chunk)
    first = [(representative[document], score) for document, score in document_ranking if document in representative]
    placed = {chunk for chunk, _ in first}
    return first + [(chunk, score) for chunk, score in chunk_ranking if chunk not in placed]
