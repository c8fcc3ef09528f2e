"""The shared BM25 analyzer: what it keeps, and that it matches the measured bm25s baseline."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import bm25s
import pytest
import Stemmer

from retrieval.text_analysis import analyzer, tokenize, tokenize_many

SAMPLES = [
    "Microstructural development of human newborn cerebral white matter assessed in vivo by MRI.",
    "The   quick brown FOX jumps over the lazy dog's back; the DOGS were not amused!",
    "IL-6 and TNF-alpha levels rose 3.5-fold (p<0.001) in COVID-19 patients",
    "Ünïcödé naïve café résumé x_y",
    "a I I a",  # one-letter tokens only
    "",
    "the and of to is",  # stopwords only
]


def test_lowercases_splits_and_stems() -> None:
    assert tokenize("Running RUNNERS ran quickly") == ["run", "runner", "ran", "quick"]


def test_drops_stopwords_and_one_letter_tokens() -> None:
    assert tokenize("The cat and a dog, in the house of I") == ["cat", "dog", "hous"]
    assert tokenize("the and of to is") == []
    assert tokenize("a b c") == []


def test_splits_on_punctuation_but_keeps_word_characters() -> None:
    assert tokenize("IL-6, TNF-alpha; COVID-19") == ["il", "tnf", "alpha", "covid", "19"]
    assert tokenize("snake_case") == ["snake_cas"]  # \w includes "_", as in bm25s/scikit-learn


def test_keeps_repeats_and_order() -> None:
    assert tokenize("cells cell CELLS membrane") == ["cell", "cell", "cell", "membran"]


def test_empty_and_whitespace() -> None:
    assert tokenize("") == []
    assert tokenize("   \n\t ") == []
    assert tokenize_many([]) == []


def test_unicode_words_survive() -> None:
    assert tokenize("Ünïcödé café") == ["ünïcödé", "café"]


def test_tokenize_many_equals_tokenize() -> None:
    assert tokenize_many(SAMPLES) == [tokenize(text) for text in SAMPLES]


def test_matches_the_bm25s_baseline_pipeline() -> None:
    reference = bm25s.tokenize(
        SAMPLES, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False
    )
    assert tokenize_many(SAMPLES) == reference


def test_thread_safe() -> None:
    texts = SAMPLES * 50
    expected = tokenize_many(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(tokenize, texts))
    assert got == expected


def test_the_simple_analyzer_keeps_every_word_unstemmed() -> None:
    assert analyzer("simple").tokenize("The Cells were RUNNING, a b") == ["the", "cells", "were", "running"]
    assert analyzer("simple").tokenize_many(["The cat", ""]) == [["the", "cat"], []]
    assert analyzer("english").tokenize("The Cells were RUNNING") == tokenize("The Cells were RUNNING")


def test_an_unknown_analyzer_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from english, simple"):
        analyzer("klingon")
