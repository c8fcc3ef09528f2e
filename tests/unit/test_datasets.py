"""Dataset loaders on tiny files written here, and the set the project ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import BadInput
from evaluation.datasets import load_dataset

REPO = Path(__file__).resolve().parents[2]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"_id": "d1", "title": "Cats", "text": "Cats purr."}, {"_id": "d2", "title": "", "text": "Dogs."}],
    )
    write_jsonl(
        tmp_path / "queries.jsonl",
        [{"_id": "q1", "text": "purring"}, {"_id": "q2", "text": "barking"}, {"_id": "q3", "text": "x"}],
    )
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\nq1\td1\t2\nq1\td2\t0\n")
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td1\t1\n")
    return tmp_path


def test_beir_layout(beir: Path) -> None:
    dataset = load_dataset(beir)
    assert dataset.layout == "beir" and dataset.split == "test"
    # queries.jsonl order; only judged queries; zero grades dropped
    assert [(q.id, q.qrels) for q in dataset.questions] == [("q1", {"d1": 2}), ("q2", {"d2": 1})]
    assert all(q.answerable and not q.answers for q in dataset.questions)
    assert dataset.documents[0].upload_text() == "# Cats\n\nCats purr."
    assert dataset.documents[1].upload_text() == "Dogs."
    assert dataset.documents[0].filename == "d1.md"


def test_beir_split_and_limit(beir: Path) -> None:
    assert [q.id for q in load_dataset(beir, split="train").questions] == ["q3"]
    limited = load_dataset(beir, limit=1)
    assert [q.id for q in limited.questions] == ["q1"]
    assert len(limited.documents) == 2
    with pytest.raises(BadInput, match="splits available: test, train"):
        load_dataset(beir, split="dev")


def test_rag_layout(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "p1", "title": "T", "text": "Body."}])
    write_jsonl(
        tmp_path / "questions.jsonl",
        [
            {"id": "a", "question": "Q?", "answers": ["A"], "gold_doc_ids": ["p1"], "answerable": True},
            {"id": "b", "question": "R?", "answers": [], "gold_doc_ids": [], "answerable": False},
        ],
    )
    dataset = load_dataset(tmp_path)
    assert dataset.layout == "rag" and dataset.split is None
    first, second = dataset.questions
    assert (first.qrels, first.answers, first.answerable) == ({"p1": 1}, ("A",), True)
    assert (second.qrels, second.answerable) == ({}, False)
    assert dataset.describe()["unanswerable_questions"] == 1


def test_limit_keeps_the_share_of_unanswerable_questions(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "p1", "title": "T", "text": "Body."}])
    rows = [
        {"id": f"a{i}", "question": "Q?", "answers": ["A"], "gold_doc_ids": ["p1"], "answerable": True}
        for i in range(6)
    ] + [{"id": f"u{i}", "question": "R?", "answerable": False} for i in range(2)]
    write_jsonl(tmp_path / "questions.jsonl", rows)
    assert [q.id for q in load_dataset(tmp_path, limit=4).questions] == ["a0", "a1", "a2", "u0"]
    assert len(load_dataset(tmp_path, limit=50).questions) == 8


def test_bad_folders_say_why(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(BadInput, match=r"no corpus\.jsonl"):
        load_dataset(tmp_path)
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "p1", "text": "x"}])
    with pytest.raises(BadInput, match="neither"):
        load_dataset(tmp_path)
    write_jsonl(
        tmp_path / "questions.jsonl",
        [{"id": "a", "question": "Q?", "answers": ["A"], "gold_doc_ids": ["p9"], "answerable": True}],
    )
    with pytest.raises(BadInput, match="p9"):
        load_dataset(tmp_path)


def test_the_shipped_set_is_consistent() -> None:
    dataset = load_dataset(REPO / "eval_sets" / "platform-docs")
    assert dataset.layout == "rag"
    assert len(dataset.documents) >= 12 and len(dataset.questions) >= 15
    assert any(not q.answerable for q in dataset.questions)
    assert all(q.answers and q.qrels for q in dataset.questions if q.answerable)
