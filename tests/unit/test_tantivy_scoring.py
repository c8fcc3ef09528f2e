"""The re-scoring formulas of the tantivy backend (its ranking is checked against rank-bm25 in the contract)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from retrieval.bm25_params import CHUNKS, DOCUMENTS, for_index
from retrieval.document_field import document_index
from retrieval.tantivy_index import TANTIVY_BM25, TantivyIndex, idf, lucene_bm25, term_counts, term_hash, term_hashes


def test_idf_stays_positive_when_deleted_chunks_still_count_in_the_doc_freq() -> None:
    assert idf(7, 5) > 0  # 7 chunks hold the term, 2 of them deleted but not merged away yet
    assert idf(1, 100) > idf(10, 100)


def test_lucene_bm25_saturates_term_counts_and_normalises_length() -> None:
    weights = np.array([2.0, 1.0])  # "cell", "stem"
    counts = np.array([[1, 0], [2, 0], [1, 0], [0, 0]], dtype=np.float64)
    lengths = np.array([10, 10, 40, 10], dtype=np.float64)
    one, two, long, none = lucene_bm25(counts, lengths, weights, avg_len=10.0, params=CHUNKS)
    k1, b = CHUNKS.k1, CHUNKS.b
    assert one == pytest.approx(2.0 * 1 / (1 + k1))  # at the mean length the norm is k1
    assert two < 2 * one
    assert long == pytest.approx(2.0 / (1 + k1 * (1 - b + b * 4)))
    assert none == 0.0


def test_whole_documents_are_scored_with_their_own_length_normalisation() -> None:
    assert for_index("papers") == CHUNKS
    assert for_index(document_index("papers")) == DOCUMENTS
    assert DOCUMENTS.b > CHUNKS.b  # documents vary in length far more than chunks cut to a budget
    weights, counts = np.array([1.0]), np.array([[1.0], [1.0]])
    lengths = np.array([10.0, 40.0])  # the same match in a short and a long text
    short_c, long_c = lucene_bm25(counts, lengths, weights, avg_len=10.0, params=CHUNKS)
    short_d, long_d = lucene_bm25(counts, lengths, weights, avg_len=10.0, params=DOCUMENTS)
    assert long_d / short_d < long_c / short_c  # length costs a document more than a chunk


def test_the_document_field_pair_is_tantivys_own_so_it_ranks_the_field_unaided() -> None:
    assert DOCUMENTS == TANTIVY_BM25


def test_term_counts_count_each_query_term_in_each_bag() -> None:
    bags = [term_hashes(["cell", "stem", "cell"]), term_hashes([]), term_hashes(["stem", "blood"])]
    hashes = np.array([term_hash("stem"), term_hash("cell"), term_hash("absent")], dtype=np.uint64)
    assert term_counts(bags, hashes).tolist() == [[1, 2, 0], [0, 0, 0], [1, 0, 0]]
    assert term_counts([], hashes).shape == (0, 3)


def test_term_hashes_are_stable_across_processes() -> None:
    # Stored with the index: a salted hash (Python's ``hash``) would miss every term in another process.
    assert term_hash("cell") == int.from_bytes(hashlib.blake2b(b"cell", digest_size=8).digest(), "little")
    assert len(term_hashes(["a", "b", "a"])) == 24  # each distinct term once, with its count


def test_tantivy_re_scores_a_margin_beyond_the_hits_asked_for(tmp_path: Path) -> None:
    assert TantivyIndex(tmp_path)._depth(200) == 250  # RESCORE_FACTOR 1.25
    assert TantivyIndex(tmp_path, rescore_depth=1000)._depth(200) == 1000
    assert TantivyIndex(tmp_path, rescore_depth=50)._depth(200) == 200  # never fewer than asked for
