"""Evaluation sets in the two layouts the harness reads, loaded into one model.

BEIR layout (retrieval only): ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score`` with a header line).
RAG layout (retrieval and answers): ``corpus.jsonl`` and ``questions.jsonl`` (``id``, ``question``,
``answers``, ``gold_doc_ids``, ``answerable``). Both become documents to upload and questions whose
``qrels`` map dataset document ids to graded relevance, so every metric reads one shape.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.errors import BadInput

Layout = Literal["beir", "rag"]


@dataclass(frozen=True)
class EvalDocument:
    id: str
    title: str
    text: str

    def upload_text(self) -> str:
        """The bytes the platform ingests: Markdown with the title as its heading, so every chunk of the
        document carries the title into both indexes (as a user's structured upload would)."""
        return f"# {self.title.strip()}\n\n{self.text}" if self.title.strip() else self.text

    @property
    def filename(self) -> str:
        return f"{self.id}.md" if self.title.strip() else f"{self.id}.txt"


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    text: str
    qrels: dict[str, int] = field(default_factory=dict)
    """Dataset document id -> relevance grade (> 0); empty for unanswerable questions."""
    answers: tuple[str, ...] = ()
    answerable: bool = True


@dataclass(frozen=True)
class EvalDataset:
    path: Path
    layout: Layout
    split: str | None
    documents: list[EvalDocument]
    questions: list[EvalQuestion]

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.path.name,
            "layout": self.layout,
            "split": self.split,
            "documents": len(self.documents),
            "questions": len(self.questions),
            "judged_questions": sum(1 for q in self.questions if q.qrels),
            "unanswerable_questions": sum(1 for q in self.questions if not q.answerable),
        }


def detect_layout(path: Path) -> Layout:
    if not (path / "corpus.jsonl").is_file():
        raise BadInput(f"{path} has no corpus.jsonl; an eval set needs one (see eval_sets/README.md).")
    if (path / "questions.jsonl").is_file():
        return "rag"
    if (path / "queries.jsonl").is_file() and (path / "qrels").is_dir():
        return "beir"
    raise BadInput(f"{path} is neither a RAG set (questions.jsonl) nor a BEIR set (queries.jsonl + qrels/).")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{path}:{number} is not valid JSON: {exc.msg}") from exc


def read_corpus(path: Path) -> list[EvalDocument]:
    return [
        EvalDocument(id=str(row["_id"]), title=str(row.get("title") or ""), text=str(row.get("text") or ""))
        for row in read_jsonl(path / "corpus.jsonl")
    ]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Positive judgements only: a zero grade means "judged not relevant", which scores like unjudged."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows, None)
        for row in rows:
            if len(row) < 3:
                continue
            query_id, doc_id, grade = row[0], row[1], int(row[2])
            if grade > 0:
                qrels.setdefault(query_id, {})[doc_id] = grade
    return qrels


def load_beir(path: Path, split: str) -> tuple[list[EvalDocument], list[EvalQuestion]]:
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        available = sorted(p.stem for p in (path / "qrels").glob("*.tsv"))
        raise BadInput(f"{path} has no qrels/{split}.tsv; splits available: {', '.join(available)}.")
    qrels = read_qrels(qrels_file)
    questions = [
        EvalQuestion(id=str(row["_id"]), text=str(row["text"]), qrels=qrels[str(row["_id"])])
        for row in read_jsonl(path / "queries.jsonl")
        if str(row["_id"]) in qrels
    ]
    return read_corpus(path), questions


def load_rag(path: Path) -> tuple[list[EvalDocument], list[EvalQuestion]]:
    questions = []
    for row in read_jsonl(path / "questions.jsonl"):
        answerable = bool(row.get("answerable", True))
        gold = [str(d) for d in row.get("gold_doc_ids") or []]
        questions.append(
            EvalQuestion(
                id=str(row["id"]),
                text=str(row["question"]),
                qrels=dict.fromkeys(gold, 1) if answerable else {},
                answers=tuple(str(a) for a in row.get("answers") or []),
                answerable=answerable,
            )
        )
    return read_corpus(path), questions


def first_questions(questions: list[EvalQuestion], limit: int) -> list[EvalQuestion]:
    """The first ``limit`` questions, keeping the set's share of unanswerable ones.

    Sets often list every answerable question first (ClapNQ does); a plain prefix would then measure
    no abstention at all. Order within each group, and between them, is kept.
    """
    unanswerable = [i for i, q in enumerate(questions) if not q.answerable]
    if limit >= len(questions) or not unanswerable:
        return questions[:limit]
    answerable = [i for i, q in enumerate(questions) if q.answerable]
    n_unanswerable = min(len(unanswerable), round(limit * len(unanswerable) / len(questions)))
    keep = set(answerable[: limit - n_unanswerable] + unanswerable[:n_unanswerable])
    return [q for i, q in enumerate(questions) if i in keep]


def load_dataset(path: Path, split: str = "test", limit: int | None = None) -> EvalDataset:
    """``split`` picks the BEIR qrels file; ``limit`` keeps N questions (quick runs, see ``first_questions``).

    The whole corpus is kept even with ``limit``: fewer distractors would inflate every score.
    """
    path = path.resolve()
    if not path.is_dir():
        raise BadInput(f"Dataset folder {path} does not exist.")
    layout = detect_layout(path)
    documents, questions = load_beir(path, split) if layout == "beir" else load_rag(path)
    known = {d.id for d in documents}
    missing = sorted({doc for q in questions for doc in q.qrels} - known)
    if missing:
        raise BadInput(f"{path}: judged documents missing from corpus.jsonl: {', '.join(missing[:5])}")
    if limit is not None:
        questions = first_questions(questions, limit)
    return EvalDataset(
        path=path,
        layout=layout,
        split=split if layout == "beir" else None,
        documents=documents,
        questions=questions,
    )
