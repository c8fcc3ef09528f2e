"""Chunking rules, mostly with a whitespace token counter (a word is a token), so bounds are exact."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import pytest

from ingest.chunking import ChunkDraft, chunk_sections
from ingest.parsers.base import Section


def words(text: str) -> int:
    return len(text.split())


def sentence(start: int, length: int = 10) -> str:
    """Unique words ("w12"), so every word in a chunk can be traced back to exactly one place."""
    return " ".join(f"w{index}" for index in range(start, start + length)) + "."


def paragraph(start: int, sentences: int, length: int = 10) -> str:
    return " ".join(sentence(start + i * length, length) for i in range(sentences))


def shared_words(left: ChunkDraft, right: ChunkDraft) -> int:
    """Length of the longest suffix of ``left`` that is a prefix of ``right``, in words."""
    a, b = left.text.split(), right.text.split()
    return max((k for k in range(1, min(len(a), len(b)) + 1) if a[-k:] == b[:k]), default=0)


def test_empty_input_gives_no_chunks() -> None:
    assert chunk_sections([], words, 50, 10) == []
    assert chunk_sections([Section(" \n\n ", 1, None)], words, 50, 10) == []


@pytest.mark.parametrize(("size", "overlap"), [(1, 1), (10, 10), (10, -1), (0, 0)])
def test_bad_size_or_overlap_is_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_sections([Section("a b c", None, None)], words, size, overlap)


def test_every_chunk_fits_and_reports_its_real_count() -> None:
    text = "\n\n".join(paragraph(i * 1000, sentences=3 + i % 4, length=7 + i % 5) for i in range(30))
    chunks = chunk_sections([Section(text, 1, None)], words, 60, 12)
    assert len(chunks) > 10
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.token_count == words(chunk.text) <= 60
        assert chunk.text in text


def test_chunks_end_on_sentence_ends_and_never_cut_words() -> None:
    text = paragraph(0, sentences=40)
    vocabulary = set(text.split())
    chunks = chunk_sections([Section(text, None, None)], words, 45, 0)
    for chunk in chunks:
        assert set(chunk.text.split()) <= vocabulary
        assert chunk.text.endswith(".")
    assert " ".join(c.text for c in chunks) == text


def test_consecutive_chunks_share_about_overlap_tokens() -> None:
    text = paragraph(0, sentences=60)
    chunks = chunk_sections([Section(text, None, None)], words, 50, 15)
    for left, right in pairwise(chunks):
        assert 15 // 2 <= shared_words(left, right) <= 15


def test_overlap_is_topped_up_with_words_when_sentences_are_long() -> None:
    text = paragraph(0, sentences=10, length=30)
    chunks = chunk_sections([Section(text, None, None)], words, 70, 10)
    assert all(shared_words(a, b) == 10 for a, b in pairwise(chunks))


def test_no_overlap_when_zero() -> None:
    text = paragraph(0, sentences=30)
    chunks = chunk_sections([Section(text, None, None)], words, 40, 0)
    assert all(shared_words(a, b) == 0 for a, b in pairwise(chunks))


def test_paragraph_break_preferred_when_chunk_stays_half_full() -> None:
    paragraphs = [paragraph(i * 100, sentences=4) for i in range(3)]
    chunks = chunk_sections([Section("\n\n".join(paragraphs), None, None)], words, 100, 0)
    assert [c.text for c in chunks] == [f"{paragraphs[0]}\n\n{paragraphs[1]}", paragraphs[2]]


def test_long_sentence_falls_back_to_words() -> None:
    text = " ".join(f"w{i}" for i in range(500))
    chunks = chunk_sections([Section(text, None, None)], words, 64, 8)
    assert all(c.token_count <= 64 for c in chunks)
    assert all(set(c.text.split()) <= set(text.split()) for c in chunks)
    assert chunks[0].text.split()[0] == "w0" and chunks[-1].text.split()[-1] == "w499"


def test_lines_are_used_before_words() -> None:
    lines = [" ".join(f"l{n}w{i}" for i in range(9)) for n in range(20)]
    chunks = chunk_sections([Section("\n".join(lines), None, None)], words, 30, 0)
    assert all(c.text.split("\n")[0] in lines and c.text.split("\n")[-1] in lines for c in chunks)


def test_cjk_sentences_split_without_spaces() -> None:
    text = "".join(f"第{i}句话很短。" for i in range(40))
    chunks = chunk_sections([Section(text, None, None)], len, 30, 0)
    assert len(chunks) > 1
    assert all(c.text.endswith("。") and c.token_count == len(c.text) <= 30 for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_giant_word_is_hard_split_within_size() -> None:
    def four_chars_per_token(text: str) -> int:
        return sum(math.ceil(len(word) / 4) for word in text.split())

    text = f"Short start. {'x' * 1000}{'y' * 999} short end."
    chunks = chunk_sections([Section(text, None, None)], four_chars_per_token, 64, 0)
    assert len(chunks) >= 2000 // (64 * 4)
    assert all(c.token_count == four_chars_per_token(c.text) <= 64 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_sections_with_different_page_or_heading_are_never_mixed() -> None:
    sections = [
        Section("Alpha one. Alpha two.", 1, "A"),
        Section("Beta one.", 1, "B"),
        Section("Gamma one.", 2, "B"),
    ]
    chunks = chunk_sections(sections, words, 100, 10)
    assert [(c.text, c.page, c.heading) for c in chunks] == [
        ("Alpha one. Alpha two.", 1, "A"),
        ("Beta one.", 1, "B"),
        ("Gamma one.", 2, "B"),
    ]


def test_consecutive_sections_with_same_page_and_heading_are_joined() -> None:
    sections = [Section("Tiny one.", 3, "H"), Section("Tiny two.", 3, "H"), Section("Other.", 3, None)]
    chunks = chunk_sections(sections, words, 100, 10)
    assert [(c.text, c.page, c.heading) for c in chunks] == [
        ("Tiny one.\n\nTiny two.", 3, "H"),
        ("Other.", 3, None),
    ]


def test_chunk_is_shrunk_when_the_whole_counts_more_than_its_parts() -> None:
    def words_and_gaps(text: str) -> int:
        return 2 * len(text.split()) - 1

    text = paragraph(0, sentences=30)
    chunks = chunk_sections([Section(text, None, None)], words_and_gaps, 60, 10)
    assert chunks
    assert all(c.token_count == words_and_gaps(c.text) <= 60 for c in chunks)


def test_deterministic() -> None:
    text = "\n\n".join(paragraph(i * 100, sentences=5) for i in range(12))
    sections = [Section(text, 1, "H"), Section(paragraph(5000, 9), 2, None)]
    assert chunk_sections(sections, words, 33, 7) == chunk_sections(sections, words, 33, 7)


def test_tokenizer_is_called_about_once_per_sentence() -> None:
    """A book must not cost a tokenizer call per growing chunk: calls stay linear in the sentences."""
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return words(text)

    sentences = 3000
    chunks = chunk_sections([Section(paragraph(0, sentences), 1, None)], counting, 200, 15)
    assert calls <= sentences + len(chunks) * (15 + 2)


def random_text(rng: random.Random) -> str:
    """Paragraphs of sentences of words, with the odd very long sentence, long word and bare line break."""
    paragraphs = []
    for _ in range(rng.randint(1, 6)):
        sentences = []
        for _ in range(rng.randint(1, 10)):
            size = rng.choice([1, 3, 8, 15, 40, 120])
            length = [rng.choice([30, 300]) if rng.random() < 0.03 else rng.randint(1, 9) for _ in range(size)]
            text = rng.choice([" ", "\n"]).join("".join(rng.choices("abcdefghij", k=n)) for n in length)
            sentences.append(text + rng.choice([".", "!", "?", "", '."']))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_keep_every_rule(seed: int) -> None:
    def four_chars_per_token(text: str) -> int:
        return sum(math.ceil(len(word) / 4) for word in text.split())

    rng = random.Random(seed)
    sections = [Section(random_text(rng), rng.choice([1, 2]), rng.choice([None, "H"])) for _ in range(3)]
    size = rng.choice([8, 20, 64])
    for overlap in (0, size // 4):
        chunks = chunk_sections(sections, four_chars_per_token, size, overlap)
        assert [c.ordinal for c in chunks] == list(range(len(chunks)))
        assert all(c.token_count == four_chars_per_token(c.text) <= size for c in chunks)
        assert all(any(c.text in s.text for s in sections) for c in chunks if "\n\n" not in c.text)
        if overlap == 0:
            assert "".join("".join(c.text.split()) for c in chunks) == "".join(
                "".join(s.text.split()) for s in sections
            )


def test_table_rows_are_never_split_and_get_no_partial_overlap() -> None:
    # Rows hold sentence ends ("Inc. ") that would be break points in prose.
    rows = [f"Company: Acme{i} Inc. Ltd; City: Town{i}. North; Revenue: {i}" for i in range(40)]
    section = Section("\n\n".join(rows), page=1, heading="Sheet1", keep_paragraphs=True)
    drafts = chunk_sections([section], words, size=30, overlap=8)
    assert len(drafts) > 1
    for draft in drafts:
        assert draft.token_count <= 30
        assert all(line in rows for line in draft.text.split("\n\n")), draft.text
    assert [line for draft in drafts for line in draft.text.split("\n\n")] == rows


def test_ocr_and_table_sections_stay_apart_from_prose_and_keep_their_mark() -> None:
    sections = [
        Section("Prose on page one.", page=1, heading=None),
        Section("Read from a scan.", page=1, heading=None, ocr=True),
        Section("a: 1; b: 2", page=1, heading=None, keep_paragraphs=True),
    ]
    drafts = chunk_sections(sections, words, size=50, overlap=5)
    assert [(d.text, d.ocr) for d in drafts] == [
        ("Prose on page one.", False),
        ("Read from a scan.", True),
        ("a: 1; b: 2", False),
    ]
