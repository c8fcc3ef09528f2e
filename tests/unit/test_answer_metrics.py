"""Answer metrics on tiny hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.answer_metrics import (
    AnswerRecord,
    abstained,
    citation_precision,
    consistency,
    cost_per_1k_questions,
    normalize_answer,
    parse_verdict,
    rouge_l,
    score_answer,
    semantic_similarity,
    summarize_answers,
    token_f1,
)


def test_squad_normalization() -> None:
    assert normalize_answer("The  Cat, sat on a mat!") == "cat sat on mat"


def test_token_f1_by_hand() -> None:
    # prediction {cat, sat}, reference {cat, sat, down}: P = 1, R = 2/3, F1 = 0.8
    assert token_f1("The cat sat.", ["a cat sat down"]) == pytest.approx(0.8)
    assert token_f1("The cat sat [1].", ["dog", "a cat sat down"]) == pytest.approx(0.8)
    assert token_f1("nothing shared", ["a cat"]) == 0.0
    assert token_f1("anything", []) is None


def test_rouge_l_by_hand() -> None:
    # LCS of "the cat sat on the mat" / "the cat lay on the mat" is 5 of 6 tokens each way.
    assert rouge_l("the cat sat on the mat", ["the cat lay on the mat"]) == pytest.approx(5 / 6)
    assert rouge_l("the cat sat on the mat [2]", ["zebra", "the cat sat on the mat"]) == pytest.approx(1.0)
    assert rouge_l("x", []) is None


def test_cosine_similarity_takes_the_best_reference() -> None:
    table = {"answer": [1.0, 0.0], "orthogonal": [0.0, 3.0], "diagonal": [2.0, 2.0]}

    def encode(texts: list[str]) -> np.ndarray:
        return np.array([table[t] for t in texts])

    assert semantic_similarity("answer", ["orthogonal", "diagonal"], encode) == pytest.approx(2**-0.5)
    assert semantic_similarity("answer", [], encode) is None


def test_citation_precision_counts_cited_chunks() -> None:
    assert citation_precision(["a", "b", "a", "c"], {"a"}) == pytest.approx(0.5)
    assert citation_precision([], {"a"}) is None


def test_abstention_uses_the_platform_detection_unless_reported() -> None:
    assert abstained("I don't know.")
    assert abstained("The sources do not mention it.")
    assert not abstained("Paris is the capital [1].")
    assert abstained("Paris [1]", reported=True)
    assert not abstained("I don't know.", reported=False)


def test_consistency_share() -> None:
    assert consistency([("a", "a"), ("b", "b "), ("c", "d"), ("e", "f")]) == pytest.approx(0.5)
    assert consistency([]) is None


def test_cost_per_thousand_questions() -> None:
    # 1,000 prompt + 100 completion tokens a question at 0.5 / 1.5 per 1k tokens: 0.65 a question.
    assert cost_per_1k_questions(1000, 100, 0.5, 1.5) == pytest.approx(650.0)


def test_summary_splits_answerable_and_unanswerable() -> None:
    records = [
        AnswerRecord(
            "q1",
            "the cat sat [1]",
            answerable=True,
            abstained=False,
            references=("a cat sat down",),
            gold_doc_ids=("d1",),
            cited_doc_ids=("d1", "d2"),
            prompt_tokens=100,
            completion_tokens=10,
            faithful=True,
        ),
        AnswerRecord(
            "q2",
            "I don't know.",
            answerable=True,
            abstained=True,
            references=("blue",),
            gold_doc_ids=("d3",),
            prompt_tokens=200,
            completion_tokens=4,
        ),
        AnswerRecord("u1", "I don't know.", answerable=False, abstained=True, prompt_tokens=150),
        AnswerRecord("u2", "It is 42 [1].", answerable=False, abstained=False, cited_doc_ids=("d9",), faithful=False),
    ]
    scores = [score_answer(r, None) for r in records]
    summary = summarize_answers(
        records, scores, consistency_pairs=[("x", "x")], price_prompt_per_1k=1.0, price_completion_per_1k=2.0
    )
    assert summary["answer_f1"] == pytest.approx((0.8 + 0.0) / 2, abs=1e-4)
    assert summary["citation_precision"] == pytest.approx(0.5)
    assert summary["citation_rate"] == pytest.approx(1.0)
    assert summary["abstention_rate"] == pytest.approx(0.5)
    assert summary["false_abstention_rate"] == pytest.approx(0.5)
    assert summary["consistency"] == 1.0
    assert summary["prompt_tokens_per_question"] == pytest.approx(112.5)
    assert summary["completion_tokens_per_question"] == pytest.approx(3.5)
    assert summary["cost_per_1k_questions"] == pytest.approx(112.5 + 3.5 * 2)
    assert summary["faithfulness"] == pytest.approx(0.5)
    assert summary["answer_similarity"] is None


def test_judge_verdicts() -> None:
    assert parse_verdict("YES.") is True
    assert parse_verdict("no, the second claim is missing") is False
    assert parse_verdict("Yesterday maybe") is None
