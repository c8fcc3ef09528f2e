"""The keyword index's document-level field: document rows built from chunks, and chunk scores lifted by them."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from core.types import ChunkRecord, Hit
from ingest.chunking import chunk_sections
from ingest.parsers.base import Section
from retrieval.document_field import (
    DocumentHits,
    document_index,
    document_key,
    document_records,
    document_text,
    overlap_length,
    with_document_scores,
)


def words(text: str) -> int:
    return len(text.split())


def chunk(doc: str, ordinal: int, text: str, context: str | None = "Title") -> ChunkRecord:
    return ChunkRecord(
        id=f"{doc}-{ordinal}",
        text=text,
        payload={"document_id": doc, "ordinal": ordinal, "filename": f"{doc}.md"},
        index_text=f"{context}\n{text}" if context else None,
    )


def hit(chunk_id: str, score: float, doc: str) -> Hit:
    return Hit(id=chunk_id, score=score, payload={"document_id": doc})


class CountedRows:
    """Document rows that record which positions were read."""

    def __init__(self, rows: list[Hit]) -> None:
        self.listed = DocumentHits.of(rows)
        self.read: list[int] = []

    def hits(self) -> DocumentHits:
        def rows(positions: list[int]) -> list[Hit]:
            self.read.extend(positions)
            return self.listed.rows(positions)

        return DocumentHits(self.listed.keys, self.listed.scores, rows)


def test_overlap_length_finds_the_longest_suffix_that_starts_the_next_chunk() -> None:
    assert overlap_length("one two three four", "three four five") == len("three four")
    assert overlap_length("aa aa aa", "aa aa bb") == len("aa aa")  # the longest, not the first match
    assert overlap_length("one two", "three four") == 0
    assert overlap_length("", "x") == overlap_length("x", "") == 0
    assert overlap_length("abc", "abc") == 3


def test_document_text_rebuilds_a_chunked_section_without_its_overlaps() -> None:
    """Through the real chunker: overlapping chunks of one section join back into the section's words."""
    text = " ".join(f"Sentence number {n} says something about topic {n % 7}." for n in range(40))
    drafts = chunk_sections([Section(text=text, page=None, heading=None)], words, size=30, overlap=8)
    assert len(drafts) > 3 and any(overlap_length(a.text, b.text) for a, b in itertools.pairwise(drafts))
    records = [chunk("d", draft.ordinal, draft.text) for draft in drafts]
    rebuilt = document_text(records)
    assert rebuilt.split("\n")[0] == "Title"  # the context line once, not once per chunk
    assert " ".join(rebuilt.split()[1:]) == text


def test_document_text_repeats_a_context_line_only_when_it_changes() -> None:
    records = [
        chunk("d", 0, "alpha", "Doc > Intro"),
        chunk("d", 1, "beta", "Doc > Intro"),
        chunk("d", 2, "gamma", "Doc > Methods"),
        chunk("d", 3, "delta", None),
    ]
    assert document_text(records) == "Doc > Intro\nalpha\nbeta\nDoc > Methods\ngamma\ndelta"


def test_overlaps_are_cut_only_inside_a_section() -> None:
    first = chunk("d", 0, "Results were clear")
    second = chunk("d", 1, "clear skies followed")
    assert document_text([first, second]) == "Title\nResults were clear\n skies followed"
    other_page = replace(second, payload={**second.payload, "page": 2})
    assert document_text([first, other_page]) == "Title\nResults were clear\nclear skies followed"


def test_document_records_one_row_per_document_on_its_first_chunk() -> None:
    records = [chunk("b", 1, "second of b"), chunk("a", 0, "only a"), chunk("b", 0, "first of b")]
    records.append(ChunkRecord(id="loose", text="no document"))
    rows = {row.payload["document_id"]: row for row in document_records(records)}
    assert set(rows) == {"a", "b"}
    assert rows["b"].id == "b-0" and rows["b"].text == "first of b"  # citations show the chunk
    assert rows["b"].payload == records[2].payload
    assert rows["b"].searchable_text == "Title\nfirst of b\nsecond of b"
    assert document_records([]) == []


def test_with_document_scores_adds_the_weighted_field_score_to_each_chunk() -> None:
    chunks = [hit("a1", 3.0, "a"), hit("b1", 2.5, "b"), hit("a2", 1.0, "a"), hit("c1", 0.5, "c")]
    documents = DocumentHits.of([hit("b0", 4.0, "b"), hit("a0", 1.0, "a"), hit("d0", 2.0, "d")])
    scored = with_document_scores(chunks, documents, 0.5)
    assert [(h.id, h.score) for h in scored] == [
        ("b1", 4.5),
        ("a1", 3.5),
        ("a2", 1.5),
        ("d0", 1.0),  # found by the field alone: its document row, its first chunk
        ("c1", 0.5),  # no field score: its own
    ]
    assert scored[0].payload == chunks[1].payload


def test_with_document_scores_weight_zero_or_no_field_keeps_the_chunk_order() -> None:
    chunks = [hit("a1", 3.0, "a"), hit("b1", 2.0, "b")]
    assert [h.id for h in with_document_scores(chunks, DocumentHits.of([]), 1.0)] == ["a1", "b1"]
    field = DocumentHits.of([hit("b0", 9.0, "b")])
    assert [(h.id, h.score) for h in with_document_scores(chunks, field, 0.0)][:2] == [
        ("a1", 3.0),
        ("b1", 2.0),
    ]


def test_a_document_row_found_also_as_a_chunk_is_not_listed_twice() -> None:
    chunks = [hit("a0", 2.0, "a")]
    scored = with_document_scores(chunks, DocumentHits.of([hit("a0", 3.0, "a")]), 1.0)
    assert [(h.id, h.score) for h in scored] == [("a0", pytest.approx(5.0))]


def test_only_the_document_rows_that_make_the_cut_are_read() -> None:
    chunks = [hit("a1", 3.0, "a"), hit("b1", 2.0, "b")]
    field = CountedRows([hit("a0", 1.0, "a"), hit("c0", 4.0, "c"), hit("d0", 0.5, "d"), hit("e0", 2.5, "e")])
    scored = with_document_scores(chunks, field.hits(), 1.0, limit=3)
    assert [(h.id, h.score) for h in scored] == [("a1", 4.0), ("c0", 4.0), ("e0", 2.5)]
    assert field.read == [1, 3]  # "a0" only lifts its chunk; "d0" is cut; "b1" falls below "e0"
    assert scored[1].payload == {"document_id": "c"}


def test_a_document_listed_twice_counts_with_its_first_row_the_best() -> None:
    chunks = [hit("a1", 1.0, "a")]
    field = DocumentHits.of([hit("a0", 2.0, "a"), hit("b3", 1.5, "b"), hit("b0", 1.0, "b"), hit("a5", 0.5, "a")])
    assert [(h.id, h.score) for h in with_document_scores(chunks, field, 1.0)] == [("a1", 3.0), ("b3", 1.5)]


def test_a_chunk_without_a_document_is_its_own_document() -> None:
    loose = Hit(id="x1", score=1.0, payload={})
    field = DocumentHits.of([Hit(id="x1", score=2.0, payload={})])
    assert field.keys == [document_key("x1")]
    assert [(h.id, h.score) for h in with_document_scores([loose], field, 1.0)] == [("x1", 3.0)]


def test_document_keys_are_stable_64_bit_numbers() -> None:
    assert document_key("doc-1") == document_key("doc-1") != document_key("doc-2")
    assert 0 <= document_key("doc-1") < 2**64


def test_document_index_is_a_sibling_name() -> None:
    assert document_index("docs__v2") == "docs__v2__documents"
