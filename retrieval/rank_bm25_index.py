"""Keyword index on ``rank_bm25``: selectable backend and the test oracle for ``Bm25sIndex``.

It reads and writes the same corpus files as ``Bm25sIndex`` (same analyzer, same term ids, same
row order), so only the scoring code differs, and that is what the contract tests compare. It
scores every row in Python, so a query costs time linear in the corpus: use it to check, not to serve.

Exact equivalence with bm25s's Lucene BM25: ``BM25Okapi`` computes, per query term,
``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` with Robertson's idf
``log((N - df + 0.5) / (df + 0.5))`` floored at ``epsilon * mean idf`` when negative. Lucene uses
the same term-frequency part without the constant ``(k1 + 1)`` and the idf
``log(1 + (N - df + 0.5) / (df + 0.5))``, which is never negative (so no floor, and terms in most
chunks of a small collection still count). ``_LuceneOkapi`` swaps in that idf through
``BM25Okapi``'s own ``_calc_idf`` hook and the index divides by ``(k1 + 1)``: scores then equal
bm25s's up to float32 rounding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from retrieval.bm25_params import Bm25Params
from retrieval.corpus_index import CorpusBackedIndex
from retrieval.keyword_corpus import KeywordCorpus


class _LuceneOkapi(BM25Okapi):
    def _calc_idf(self, nd: dict[int, int]) -> None:
        for term, df in nd.items():
            self.idf[term] = math.log(1 + (self.corpus_size - df + 0.5) / (df + 0.5))
        self.average_idf = sum(self.idf.values()) / len(self.idf) if self.idf else 0.0


class RankBm25Index(CorpusBackedIndex):
    name = "rank_bm25"

    def _build_scorer(self, corpus: KeywordCorpus, folder: Path, params: Bm25Params) -> _LuceneOkapi:
        # Term ids are hashable tokens as good as strings, and skip a decode.
        return _LuceneOkapi([t.tolist() for t in corpus.terms], k1=params.k1, b=params.b)

    def _scores(self, scorer: _LuceneOkapi, term_ids: list[int]) -> np.ndarray:
        return np.asarray(scorer.get_scores(term_ids)) / (scorer.k1 + 1)
