"""The re-scoring formulas of the tantivy backend (its ranking is checked against rank-bm25 in the contract)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.bm25_params import K1, B
from retrieval.tantivy_index import idf, lucene_bm25


def test_idf_stays_positive_when_deleted_chunks_still_count_in_the_doc_freq() -> None:
    assert idf(7, 5) > 0  # 7 chunks hold the term, 2 of them deleted but not merged away yet
    assert idf(1, 100) > idf(10, 100)


def test_lucene_bm25_saturates_term_counts_and_normalises_length() -> None:
    weights = np.array([2.0, 1.0])  # "cell", "stem"
    counts = np.array([[1, 0], [2, 0], [1, 0], [0, 0]], dtype=np.float64)
    lengths = np.array([10, 10, 40, 10], dtype=np.float64)
    one, two, long, none = lucene_bm25(counts, lengths, weights, avg_len=10.0)
    assert one == pytest.approx(2.0 * 1 / (1 + K1))  # at the mean length the norm is K1
    assert two < 2 * one
    assert long == pytest.approx(2.0 / (1 + K1 * (1 - B + B * 4)))
    assert none == 0.0
