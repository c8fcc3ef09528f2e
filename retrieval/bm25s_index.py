"""In-process BM25 keyword index on ``bm25s`` (Lucene BM25 at ``bm25_params.for_index``), the default backend.

Ranking only: the corpus, its storage and the write protocol are ``retrieval.corpus_index`` and
``retrieval.keyword_corpus``. The bm25s score matrix of each corpus version is cached on disk under
``root/<index>/bm25s-<version>-<k1>-<b>/``, so a restart loads it instead of re-scoring every row.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bm25s
import numpy as np

from retrieval.bm25_params import Bm25Params
from retrieval.corpus_index import CorpusBackedIndex
from retrieval.keyword_corpus import KeywordCorpus

_MATRIX_PREFIX = "bm25s-"


class Bm25sIndex(CorpusBackedIndex):
    """bm25s (Lucene BM25) over the shared corpus; its score matrix is cached on disk per version."""

    name = "bm25s"

    def _build_scorer(self, corpus: KeywordCorpus, folder: Path, params: Bm25Params) -> bm25s.BM25:
        cached = folder / f"{_MATRIX_PREFIX}{corpus.version}-{params.k1}-{params.b}"  # other parameters, another matrix
        if cached.is_dir():
            try:
                return bm25s.BM25.load(str(cached), show_progress=False)
            except (OSError, ValueError):
                pass  # half-removed by another process: rebuild below
        model = bm25s.BM25(k1=params.k1, b=params.b, method="lucene")
        model.index(([t.tolist() for t in corpus.terms], corpus.vocab), create_empty_token=False, show_progress=False)
        self._save_matrix(model, folder, cached)
        return model

    @staticmethod
    def _save_matrix(model: bm25s.BM25, folder: Path, target: Path) -> None:
        """Cache the matrix so a restart loads it in a fraction of a second instead of re-scoring."""
        try:
            tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".bm25s-"))
        except OSError:
            return  # the folder is gone (the index was dropped): nothing to cache
        try:
            model.save(str(tmp), show_progress=False)
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process cached this version first
            return
        for stale in folder.glob(f"{_MATRIX_PREFIX}*"):
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)

    def _scores(self, scorer: bm25s.BM25, term_ids: list[int]) -> np.ndarray:
        return scorer.get_scores_from_ids(term_ids)
