"""Evidence: the sentences of the retrieved passages that answer the question, scored and selected.

Pure logic over passages the caller already has (the ranked hits, plus their neighbouring chunks so a
sentence cut at a chunk edge is seen whole). Every sentence keeps its chunk id and its character offsets
in that chunk, so a citation can point at the exact span.

Score of a sentence (weights in ``EvidenceWeights``, chosen on clapnq-dev with bench/answer_modes.py):

    cosine(question, context: sentence)      the loaded embedding model; the chunk's title or heading
                                             path as context tells it what "it" and "they" are
  + lexical * share of question terms in it  the BM25 analyzer's stemmed terms
  + cross_encoder * sigmoid(CE score)        only when a cross-encoder is configured
  - rank * (rank of its passage's hit)       the fused ranking's prior: the top hit is likelier to hold it

Selection takes sentences best first, skipping near-duplicates, until a word budget is filled, then puts
them in reading order (by passage rank, then position in the document). Answerability is the best
sentence's cosine: on clapnq-dev it separates answerable from unanswerable questions better than the
combined score, lexical overlap or the fused retrieval scores (bench/answer_modes.py prints the curve).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from generation.loops import has_loop
from generation.sentences import Sentence, split_sentences
from retrieval.text_analysis import tokenize

MIN_EVIDENCE_WORDS = 3
"""Shorter sentences ("Yes.", a heading) carry no evidence of their own."""


class SentenceEncoder(Protocol):
    """The embedding model's two calls (``retrieval.embedding.Embedder`` has them)."""

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...


class PairScorer(Protocol):
    """A cross-encoder: one relevance score per (query, text) pair, in input order."""

    def scores(self, query: str, texts: list[str]) -> list[float]: ...


@dataclass(frozen=True)
class Passage:
    """One chunk's text with where it came from; ``rank`` is its hit's position (neighbours share it)."""

    rank: int
    chunk_id: str
    document_id: str | None
    filename: str | None
    page: int | None
    ordinal: int
    text: str
    score: float = 0.0
    context: str | None = None
    """The title or heading path of the chunk: a sentence saying "It was completed in 1889" is scored
    together with what "it" is."""
    ocr: bool = False
    """The text was read from an image (it may hold misreadings)."""


@dataclass(frozen=True)
class EvidenceWeights:
    lexical: float = 0.2
    rank: float = 0.2
    cross_encoder: float = 1.0
    budget_words: int = 60
    """Selection stops once this many words are chosen; one sentence may overshoot it..."""
    overshoot: float = 2.0
    """...but never past ``budget_words * overshoot``."""
    max_sentences: int = 3
    duplicate_jaccard: float = 0.8
    """Sentences sharing this share of their terms with a chosen one are near-duplicates."""


@dataclass(frozen=True)
class Candidate:
    passage: Passage
    sentence: Sentence
    terms: frozenset[str]
    cosine: float = 0.0
    lexical: float = 0.0
    cross_encoder: float | None = None
    score: float = 0.0

    @property
    def text(self) -> str:
        return self.sentence.clean

    @property
    def scored_text(self) -> str:
        context = self.passage.context
        return f"{context}: {self.text}" if context else self.text

    @property
    def reading_key(self) -> tuple[int, str, int, int]:
        return (self.passage.rank, self.passage.document_id or "", self.passage.ordinal, self.sentence.start)


@dataclass
class Evidence:
    """Every scored sentence (best first), the selected ones (reading order) and the answerability."""

    candidates: list[Candidate] = field(default_factory=list)
    selected: list[Candidate] = field(default_factory=list)
    answerability: float = 0.0
    vectors: np.ndarray | None = None
    """Unit embeddings of ``candidates`` in the same order (verification reuses them)."""


def collect_candidates(passages: Sequence[Passage]) -> list[Candidate]:
    """Sentences of every passage, each text once; too short or degenerate ones (an infobox repeating
    itself) are no evidence.

    Overlapping chunks repeat sentences, and a chunk's first sentence may be the tail of one its
    neighbour holds whole: a sentence contained in another candidate is dropped, and of identical ones
    the best-ranked passage's copy is kept.
    """
    found: list[Candidate] = []
    for passage in sorted(passages, key=lambda p: (p.rank, p.document_id or "", p.ordinal)):
        for sentence in split_sentences(passage.text):
            clean = sentence.clean
            if len(clean.split()) < MIN_EVIDENCE_WORDS or has_loop(clean):
                continue
            found.append(Candidate(passage, sentence, frozenset(tokenize(clean))))
    texts = [c.text for c in found]
    kept: list[Candidate] = []
    seen: set[str] = set()
    for candidate in found:
        text = candidate.text
        if text in seen or any(text != other and text in other for other in texts):
            continue
        seen.add(text)
        kept.append(candidate)
    return kept


def lexical_overlap(question_terms: frozenset[str], terms: frozenset[str]) -> float:
    return len(question_terms & terms) / len(question_terms) if question_terms else 0.0


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, value))))


def score_candidates(
    question: str,
    candidates: Sequence[Candidate],
    encoder: SentenceEncoder,
    weights: EvidenceWeights,
    *,
    question_vector: np.ndarray | None = None,
    cross_encoder: PairScorer | None = None,
) -> Evidence:
    """Scores every candidate; ``Evidence.candidates`` comes back best first, nothing selected yet."""
    if not candidates:
        return Evidence()
    query = _unit(np.asarray(question_vector if question_vector is not None else encoder.embed_query(question)))
    vectors = _unit(np.asarray(encoder.embed_documents([c.scored_text for c in candidates]), dtype=np.float32))
    cosines = vectors @ query
    ce_scores = cross_encoder.scores(question, [c.text for c in candidates]) if cross_encoder else None
    question_terms = frozenset(tokenize(question))
    scored: list[tuple[Candidate, int]] = []
    for index, candidate in enumerate(candidates):
        cosine = float(cosines[index])
        lexical = lexical_overlap(question_terms, candidate.terms)
        ce = _sigmoid(ce_scores[index]) if ce_scores is not None else None
        score = cosine + weights.lexical * lexical - weights.rank * candidate.passage.rank
        if ce is not None:
            score += weights.cross_encoder * ce
        scored.append(
            (Candidate(candidate.passage, candidate.sentence, candidate.terms, cosine, lexical, ce, score), index)
        )
    scored.sort(key=lambda pair: -pair[0].score)
    order = [index for _, index in scored]
    return Evidence(
        candidates=[candidate for candidate, _ in scored],
        answerability=float(np.max(cosines)),
        vectors=vectors[order],
    )


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def select_sentences(candidates: Sequence[Candidate], weights: EvidenceWeights) -> list[Candidate]:
    """Best first into the word budget, near-duplicates skipped; returned in reading order."""
    chosen: list[Candidate] = []
    words = 0
    ceiling = weights.budget_words * weights.overshoot
    for candidate in candidates:
        if words >= weights.budget_words or len(chosen) >= weights.max_sentences:
            break
        length = len(candidate.text.split())
        if chosen and words + length > ceiling:
            continue
        if any(_jaccard(candidate.terms, other.terms) >= weights.duplicate_jaccard for other in chosen):
            continue
        chosen.append(candidate)
        words += length
    return sorted(chosen, key=lambda c: c.reading_key)


def gather_evidence(
    question: str,
    passages: Sequence[Passage],
    encoder: SentenceEncoder,
    weights: EvidenceWeights,
    *,
    question_vector: np.ndarray | None = None,
    cross_encoder: PairScorer | None = None,
) -> Evidence:
    """Split, score and select in one call."""
    evidence = score_candidates(
        question,
        collect_candidates(passages),
        encoder,
        weights,
        question_vector=question_vector,
        cross_encoder=cross_encoder,
    )
    evidence.selected = select_sentences(evidence.candidates, weights)
    return evidence
