"""Rank fusion against hand-computed values."""

from __future__ import annotations

import pytest

from retrieval.fusion import best_per_document, convex, documents_first, rrf


def assert_fused(actual: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [doc for doc, _ in actual] == [doc for doc, _ in expected]
    assert [score for _, score in actual] == pytest.approx([score for _, score in expected])


def test_rrf_sums_reciprocal_ranks_with_k() -> None:
    fused = dict(rrf([["a", "b", "c"], ["c", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)


def test_rrf_order_and_small_k() -> None:
    assert [d for d, _ in rrf([["a", "b", "c"], ["c", "b", "a"], ["b"]], k=0)] == ["b", "a", "c"]
    # k=0: a = 1 + 1/3, b = 1/2 + 1/2 + 1, c = 1/3 + 1
    assert dict(rrf([["a", "b", "c"], ["c", "b", "a"], ["b"]], k=0)) == pytest.approx(
        {"a": 4 / 3, "b": 2.0, "c": 4 / 3}
    )


def test_rrf_weights_change_the_winner() -> None:
    lists = [["a", "b"], ["b", "c"]]
    assert_fused(rrf(lists, k=0, weights=[1.0, 3.0]), [("b", 3.5), ("c", 1.5), ("a", 1.0)])
    assert [d for d, _ in rrf(lists, k=0, weights=[3.0, 1.0])] == ["a", "b", "c"]


def test_rrf_zero_weight_list_only_contributes_ids() -> None:
    assert_fused(rrf([["a"], ["b"]], k=60, weights=[1.0, 0.0]), [("a", 1 / 61), ("b", 0.0)])


def test_rrf_ties_keep_first_appearance() -> None:
    # a and b swap ranks across the two lists: equal scores, a seen first. Same for c and d.
    assert [d for d, _ in rrf([["a", "b", "c"], ["b", "a", "d"]])] == ["a", "b", "c", "d"]
    assert [d for d, _ in rrf([["b", "a", "d"], ["a", "b", "c"]])] == ["b", "a", "d", "c"]


def test_rrf_duplicate_in_one_list_counts_once_at_best_rank() -> None:
    assert dict(rrf([["a", "a", "b"]], k=0)) == pytest.approx({"a": 1.0, "b": 1 / 3})


def test_rrf_edge_cases() -> None:
    assert rrf([]) == []
    assert rrf([[], []]) == []
    with pytest.raises(ValueError, match="weights"):
        rrf([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError):
        rrf([["a"]], weights=[-1.0])
    with pytest.raises(ValueError):
        rrf([["a"]], k=-1)


def test_convex_min_max_normalizes_each_list() -> None:
    fused = convex([[("a", 10.0), ("b", 5.0), ("c", 0.0)], [("b", 0.9), ("d", 0.1)]], [0.5, 0.5])
    assert_fused(fused, [("b", 0.75), ("a", 0.5), ("c", 0.0), ("d", 0.0)])


def test_convex_default_weights_and_constant_list() -> None:
    # A list with one distinct score gives each member 1.0; missing ids get 0 from that list.
    fused = convex([[("a", 3.0), ("b", 3.0)], [("b", 2.0), ("c", 1.0)]])
    assert_fused(fused, [("b", 2.0), ("a", 1.0), ("c", 0.0)])


def test_convex_scale_invariant() -> None:
    small = convex([[("a", 0.3), ("b", 0.2), ("c", 0.1)], [("c", 30.0), ("a", 10.0), ("b", 0.0)]])
    large = convex([[("a", 300.0), ("b", 200.0), ("c", 100.0)], [("c", 3.0), ("a", 1.0), ("b", 0.0)]])
    assert [d for d, _ in small] == [d for d, _ in large] == ["a", "c", "b"]


def test_convex_rejects_bad_weights() -> None:
    assert convex([]) == []
    with pytest.raises(ValueError):
        convex([[("a", 1.0)]], [1.0, 2.0])


def test_best_per_document_keeps_each_documents_first_and_best_chunk() -> None:
    document_of = {"a1": "a", "a2": "a", "b1": "b"}
    assert best_per_document([("a2", 0.9), ("b1", 0.5), ("a1", 0.4)], document_of) == [("a", 0.9), ("b", 0.5)]
    assert best_per_document([], document_of) == []


def test_documents_first_puts_one_chunk_per_document_then_the_rest() -> None:
    document_of = {"a1": "a", "a2": "a", "b1": "b", "c1": "c"}
    chunks = [("a2", 0.8), ("b1", 0.7), ("a1", 0.6), ("c1", 0.2)]
    documents = [("b", 1.5), ("a", 1.2), ("c", 0.3)]
    assert documents_first(chunks, documents, document_of) == [
        ("b1", 1.5),
        ("a2", 1.2),
        ("c1", 0.3),
        ("a1", 0.6),
    ]
    # one document: its best chunk, then the others in chunk order
    one = {"a1": "a", "a2": "a", "a3": "a"}
    assert documents_first([("a3", 0.9), ("a1", 0.5), ("a2", 0.1)], [("a", 1.0)], one) == [
        ("a3", 1.0),
        ("a1", 0.5),
        ("a2", 0.1),
    ]
