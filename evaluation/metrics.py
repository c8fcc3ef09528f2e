"""Retrieval metrics over document-level rankings, and latency percentiles.

The platform retrieves chunks; judgements name documents. ``doc_ranking`` turns a chunk ranking into a
document ranking (a document ranks where its best chunk ranks), and ranx scores those rankings.

nDCG uses the exponential gain 2^rel - 1 (ranx's ``ndcg_burges``), the convention of the BEIR tooling and
of ``../shared/tools/beir_baseline.py``; with binary judgements it equals the linear-gain variant.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from ranx import Qrels, Run, evaluate

RANX_METRICS: dict[str, str] = {
    "ndcg@10": "ndcg_burges@10",
    "recall@5": "recall@5",
    "recall@10": "recall@10",
    "recall@100": "recall@100",
    "mrr@10": "mrr@10",
}
RETRIEVAL_METRICS = tuple(RANX_METRICS)
RUN_DEPTH = 100
"""Deepest cutoff any metric reads; rankings are scored to this depth."""

PERCENTILES = (50, 95, 99)


def doc_ranking(
    chunk_ids: Iterable[str],
    chunk_to_doc: Mapping[str, str],
    doc_to_dataset: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Best-first dataset document ids from best-first chunk ids; each document at its best chunk's rank.

    ``doc_to_dataset`` maps a platform document to the dataset ids it stands for (identical texts dedupe
    into one upload, so one document may stand for several); unmapped documents keep their own id and
    count as not relevant. Chunks unknown to ``chunk_to_doc`` are skipped.
    """
    ranking: dict[str, None] = {}
    for chunk in chunk_ids:
        document = chunk_to_doc.get(chunk)
        if document is None:
            continue
        for dataset_id in (doc_to_dataset or {}).get(document, (document,)):
            ranking.setdefault(dataset_id, None)
    return list(ranking)


def score_rankings(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean of each metric in ``RETRIEVAL_METRICS`` over the judged queries, and each query's scores.

    Queries without judgements are left out (they have nothing to find); judged queries missing from
    ``rankings`` or with an empty ranking score 0. Both parts are empty when no query is judged.
    """
    judged = {q: dict(docs) for q, docs in qrels.items() if docs}
    if not judged:
        return {}, {}
    runs = {
        q: {doc: float(RUN_DEPTH - rank) for rank, doc in enumerate(rankings.get(q, ())[:RUN_DEPTH])} for q in judged
    }
    runs = {q: docs for q, docs in runs.items() if docs}
    if not runs:
        return dict.fromkeys(RETRIEVAL_METRICS, 0.0), {q: dict.fromkeys(RETRIEVAL_METRICS, 0.0) for q in judged}
    run = Run(runs)
    with warnings.catch_warnings():
        # ranx's numba kernels warn about an internal uint64 -> int64 cast on every call.
        warnings.simplefilter("ignore")
        evaluate(Qrels(judged), run, list(RANX_METRICS.values()), make_comparable=True)
    per_query = {
        q: {name: float(run.scores[ranx_name].get(q, 0.0)) for name, ranx_name in RANX_METRICS.items()} for q in judged
    }
    means = {name: float(np.mean([scores[name] for scores in per_query.values()])) for name in RANX_METRICS}
    return means, per_query


def ir_metrics(qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]) -> dict[str, float]:
    return score_rankings(qrels, rankings)[0]


def latency_percentiles(values_ms: Sequence[float], prefix: str = "latency_ms") -> dict[str, float]:
    """``{prefix}_p50`` / ``_p95`` / ``_p99`` in milliseconds (linear interpolation); ``{}`` when empty."""
    if not values_ms:
        return {}
    points = np.percentile(np.asarray(values_ms, dtype=float), PERCENTILES)
    return {f"{prefix}_p{p}": round(float(v), 2) for p, v in zip(PERCENTILES, points, strict=True)}
