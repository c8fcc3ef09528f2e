"""Retrieval metrics and chunk-to-document aggregation against hand-computed values."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import RETRIEVAL_METRICS, doc_ranking, ir_metrics, latency_percentiles, score_rankings


def test_document_ranks_at_its_best_chunk() -> None:
    chunk_to_doc = {"c1": "d1", "c2": "d2", "c3": "d1", "c4": "d3"}
    assert doc_ranking(["c3", "c2", "c1", "unknown", "c4"], chunk_to_doc) == ["d1", "d2", "d3"]


def test_one_upload_can_stand_for_several_dataset_documents() -> None:
    chunk_to_doc = {"c1": "doc-a", "c2": "doc-b", "c3": "other"}
    to_dataset = {"doc-a": ["7", "8"], "doc-b": ["9"]}
    # "other" is not a dataset document: it keeps its own id and ranks as a non-relevant hit.
    assert doc_ranking(["c3", "c1", "c2"], chunk_to_doc, to_dataset) == ["other", "7", "8", "9"]


def test_binary_judgements_by_hand() -> None:
    qrels = {"q1": {"a": 1, "b": 1}}
    ranking = {"q1": ["x", "a", "y", "z", "w", "b"]}
    scores = ir_metrics(qrels, ranking)
    dcg = 1 / math.log2(3) + 1 / math.log2(7)
    idcg = 1 + 1 / math.log2(3)
    assert scores["ndcg@10"] == pytest.approx(dcg / idcg)
    assert scores["recall@5"] == pytest.approx(0.5)
    assert scores["recall@10"] == pytest.approx(1.0)
    assert scores["recall@100"] == pytest.approx(1.0)
    assert scores["mrr@10"] == pytest.approx(0.5)


def test_graded_judgements_use_exponential_gain() -> None:
    """The BEIR / baseline-script convention: gain 2^rel - 1."""
    scores = ir_metrics({"q": {"c": 2, "d": 1}}, {"q": ["d", "c"]})
    dcg = (2**1 - 1) / math.log2(2) + (2**2 - 1) / math.log2(3)
    idcg = (2**2 - 1) / math.log2(2) + (2**1 - 1) / math.log2(3)
    assert scores["ndcg@10"] == pytest.approx(dcg / idcg)


def test_cutoffs_and_unretrieved_queries() -> None:
    qrels = {"hit": {"a": 1}, "missed": {"b": 1}, "empty": {"c": 1}, "unjudged": {}}
    rankings = {
        "hit": [f"n{i}" for i in range(10)] + ["a"],  # rank 11: outside @10, inside @100
        "empty": [],
        "unjudged": ["a"],
    }
    means, per_query = score_rankings(qrels, rankings)
    assert set(per_query) == {"hit", "missed", "empty"}
    assert per_query["hit"]["recall@10"] == 0.0
    assert per_query["hit"]["recall@100"] == 1.0
    assert per_query["hit"]["mrr@10"] == 0.0
    assert per_query["missed"] == dict.fromkeys(RETRIEVAL_METRICS, 0.0)
    assert means["recall@100"] == pytest.approx(1 / 3)


def test_nothing_judged_gives_no_metrics() -> None:
    assert ir_metrics({"q": {}}, {"q": ["a"]}) == {}


def test_latency_percentiles_interpolate() -> None:
    values = [float(v) for v in range(1, 101)]
    assert latency_percentiles(values) == {
        "latency_ms_p50": 50.5,
        "latency_ms_p95": 95.05,
        "latency_ms_p99": 99.01,
    }
    assert latency_percentiles([], prefix="x") == {}
