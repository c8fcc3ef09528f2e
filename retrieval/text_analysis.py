"""The text analyzers behind every BM25 backend, for documents and queries alike.

``english`` (the default) is described below. ``simple`` keeps every word: lowercase, the same token
pattern, no stopwords, no stemming, for corpora where English stemming hurts (code, identifiers, other
languages). A collection picks one with ``keyword_tokenizer`` (a re-index can change it); its index and
its queries always go through the same one.

It mirrors ``bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer("english"))`` step for step
(lowercase, scikit-learn's token pattern, bm25s's English stopwords removed *before* stemming,
Snowball English stems), because that pipeline is the baseline the retrieval figures in bench/README.md
are measured against. Any backend that tokenizes differently would no longer rank like the baseline or like
the other backend.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

# scikit-learn's CountVectorizer pattern, as bm25s uses it: runs of 2+ word characters, so
# one-letter tokens and punctuation never become terms.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOPWORDS = frozenset(STOPWORDS_EN)
# PyStemmer objects keep an internal cache and are not safe to share between threads.
_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def _analyze(text: str, stem: Callable[[list[str]], list[str]]) -> list[str]:
    words = [word for word in _TOKEN.findall(text.lower()) if word not in _STOPWORDS]
    return stem(words) if words else []


def tokenize(text: str) -> list[str]:
    """Stemmed, stopword-free terms of ``text`` in order, duplicates kept (they are term counts)."""
    return _analyze(text, _stemmer().stemWords)


def tokenize_many(texts: Iterable[str]) -> list[list[str]]:
    stem = _stemmer().stemWords
    return [_analyze(text, stem) for text in texts]


def tokenize_simple(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Analyzer:
    tokenize: Callable[[str], list[str]]
    tokenize_many: Callable[[Iterable[str]], list[list[str]]]


DEFAULT_TOKENIZER = "english"
ANALYZERS: dict[str, Analyzer] = {
    "english": Analyzer(tokenize, tokenize_many),
    "simple": Analyzer(tokenize_simple, lambda texts: [tokenize_simple(text) for text in texts]),
}


def analyzer(name: str) -> Analyzer:
    try:
        return ANALYZERS[name]
    except KeyError:
        raise ValueError(f"unknown keyword tokenizer {name!r}; choose from {', '.join(ANALYZERS)}") from None
