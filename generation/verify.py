"""Checking a written answer against the evidence, sentence by sentence.

Each answer sentence is matched with its best-supporting evidence sentence. Support is the mean of the
embedding cosine and the share of the answer sentence's terms found in the evidence sentence: a paraphrase
scores high on the first, a copied clause on both, a sentence the sources do not hold on neither. A
sentence citing a source that holds support keeps that citation; one that cites nothing (or the wrong
source) but is supported gets the citation of its best support; one below the threshold is marked
unsupported. Groundedness is the share of supported sentences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from generation.citations import cited_numbers
from generation.evidence import Candidate, Evidence, SentenceEncoder
from generation.sentences import split_sentences
from retrieval.text_analysis import tokenize

_MARKERS = re.compile(r"\s*\[\s*(?:sources?\s*)?\d+(?:\s*(?:,|;|-|–|and)\s*(?:sources?\s*)?\d+)*\s*\]", re.I)


@dataclass(frozen=True)
class SentenceCheck:
    """One sentence of an answer and what backs it."""

    text: str
    """The sentence without its citation markers."""
    numbers: tuple[int, ...]
    """The sources it cites after verification (empty when unsupported)."""
    supported: bool
    support: float
    evidence: Candidate | None
    """The best-supporting evidence sentence, when supported."""


def strip_markers(text: str) -> str:
    return _MARKERS.sub("", text).strip()


def support_scores(sentence_vector: np.ndarray, sentence_terms: frozenset[str], evidence: Evidence) -> np.ndarray:
    """Support of one answer sentence by each evidence candidate, in ``evidence.candidates`` order."""
    assert evidence.vectors is not None
    cosines = evidence.vectors @ sentence_vector
    if not sentence_terms:
        return cosines
    coverage = np.array([len(sentence_terms & c.terms) / len(sentence_terms) for c in evidence.candidates])
    return (cosines + coverage) / 2


def check_sentences(
    answer: str,
    evidence: Evidence,
    encoder: SentenceEncoder,
    number_of: Callable[[Candidate], int],
    threshold: float,
    available: Sequence[int],
) -> list[SentenceCheck]:
    """``number_of`` maps an evidence sentence to the citation number of its passage; ``available`` are the
    numbers the model was shown (citations outside them are ignored as hallucinated)."""
    sentences = [s.text for s in split_sentences(answer)]
    plain = [strip_markers(s) for s in sentences]
    checks: list[SentenceCheck] = []
    if not evidence.candidates:
        return [SentenceCheck(p, (), False, 0.0, None) for p in plain if p]
    vectors = np.asarray(encoder.embed_documents([p or s for p, s in zip(plain, sentences, strict=True)]))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1.0, norms)
    numbers = np.array([number_of(c) for c in evidence.candidates])
    for sentence, text, vector in zip(sentences, plain, vectors, strict=True):
        if not text:
            continue
        scores = support_scores(vector, frozenset(tokenize(text)), evidence)
        cited = set(cited_numbers(sentence, available))
        in_cited = np.isin(numbers, list(cited)) if cited else np.zeros(len(numbers), dtype=bool)
        best = int(np.argmax(scores))
        if in_cited.any() and float(np.max(np.where(in_cited, scores, -np.inf))) >= threshold:
            best = int(np.argmax(np.where(in_cited, scores, -np.inf)))
        support = float(scores[best])
        if support >= threshold:
            candidate = evidence.candidates[best]
            checks.append(SentenceCheck(text, (number_of(candidate),), True, support, candidate))
        else:
            checks.append(SentenceCheck(text, (), False, support, None))
    return checks


def groundedness(checks: Sequence[SentenceCheck]) -> float | None:
    """Share of supported sentences; None for an answer with no sentence."""
    return sum(check.supported for check in checks) / len(checks) if checks else None


def render_checked(checks: Sequence[SentenceCheck]) -> str:
    """The answer rebuilt with each supported sentence followed by its verified marker."""
    parts = []
    for check in checks:
        markers = "".join(f" [{n}]" for n in check.numbers)
        parts.append(f"{check.text}{markers}")
    return " ".join(parts)
