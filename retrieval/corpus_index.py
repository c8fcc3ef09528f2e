"""A ``KeywordIndex`` over a ``KeywordCorpus`` that any in-process BM25 scorer ranks.

BM25 weights depend on corpus-wide statistics, so every change touches every row of the score matrix: the
writer rebuilds it from the stored ids before the write returns when the index was searched since the last
rebuild (so a document is searchable once ``indexed``, and a search never waits on a rebuild), and otherwise
the next search builds it (a bulk load with no searches pays no rebuild per batch; with searches, at most one
per batch). Writes are copy-on-write: searches keep scoring the previous corpus until the writer publishes
the new one with its matrix. Lock order for writers: the per-index write lock, the cross-process
``writer_lock``, then the state lock (held only for lookups and swaps, never while scoring).
"""

from __future__ import annotations

import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.types import ChunkRecord, Hit, SearchFilter
from retrieval import keyword_corpus
from retrieval.bm25_params import Bm25Params, for_index
from retrieval.document_field import DocumentRowsAsHits
from retrieval.keyword_corpus import KeywordCorpus, Stamp
from retrieval.payload import check_index_name, chunk_payload
from retrieval.text_analysis import DEFAULT_TOKENIZER, analyzer


def top_positive(scores: np.ndarray, limit: int) -> np.ndarray:
    """Rows of the ``limit`` best positive scores, best first, ties to the earlier row."""
    rows = np.flatnonzero(scores > 0)
    if rows.size > limit:
        kth = np.partition(scores[rows], rows.size - limit)[rows.size - limit]
        rows = rows[scores[rows] >= kth]
    return rows[np.lexsort((rows, -scores[rows]))][:limit]


class _IndexState:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # guards the fields below; held only for lookups and swaps
        self.write_lock = threading.Lock()  # one writer per index in this process
        self.writing = False  # between a local save and its publication: the file is ours, don't reload it
        self.searched = False  # a search read the published version: the next write rebuilds the matrix
        self.corpus: KeywordCorpus | None = None
        self.stamp: Stamp | None = None
        self.scorer: Any = None
        self.scorer_version = ""


class CorpusBackedIndex(DocumentRowsAsHits, ABC):
    """A ``KeywordIndex`` over ``KeywordCorpus`` files; subclasses only build and apply a scorer."""

    name: str

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._states: dict[str, _IndexState] = {}
        self._lock = threading.Lock()

    @abstractmethod
    def _build_scorer(self, corpus: KeywordCorpus, folder: Path, params: Bm25Params) -> Any:
        """A scorer for ``corpus`` (at least one row) at ``params``; its ``_scores`` need no other."""

    @abstractmethod
    def _scores(self, scorer: Any, term_ids: list[int]) -> np.ndarray:
        """BM25 score of every row for the query's term ids."""

    def _folder(self, index: str) -> Path:
        return self._root / check_index_name(index)

    def _state(self, index: str) -> _IndexState:
        with self._lock:
            return self._states.setdefault(index, _IndexState())

    def _fresh(self, index: str, state: _IndexState) -> KeywordCorpus | None:
        """The corpus as on disk now, reloaded if any process replaced it since we read it."""
        if state.writing:
            return state.corpus
        folder = self._folder(index)
        stamp = keyword_corpus.stamp(folder)
        if stamp != state.stamp:
            state.corpus = KeywordCorpus.load(folder) if stamp[0] is not None else None
            state.stamp = stamp
        return state.corpus

    def _write(self, index: str, change: dict[str, Any]) -> None:
        """Copy-apply-persist-publish under this process's write lock and a cross-process flock.

        ``change`` is applied to a copy of the corpus (no write if it changes nothing). Searches read the
        published corpus throughout; a failure before publishing leaves it as it was, and one during the
        write makes the next search reload the files (a torn log entry is ignored, and cut off by the next
        append).
        """
        folder = self._folder(index)
        state = self._state(index)
        with state.write_lock, keyword_corpus.writer_lock(folder):
            with state.lock:
                loaded = self._fresh(index, state)
                state.writing = True
            try:
                corpus = loaded.copy() if loaded is not None else KeywordCorpus()
                if not corpus.apply(change):
                    return
                corpus.persist(folder, change)
                stamp = keyword_corpus.stamp(folder)
                searched = state.searched and len(corpus)
                scorer = self._build_scorer(corpus, folder, for_index(index)) if searched else None
                with state.lock:
                    state.corpus, state.stamp = corpus, stamp
                    if scorer is not None:
                        state.scorer, state.scorer_version, state.searched = scorer, corpus.version, False
            finally:
                with state.lock:
                    state.writing = False

    def add(self, index: str, records: Sequence[ChunkRecord], tokenizer: str = DEFAULT_TOKENIZER) -> None:
        if not records:
            return
        # Outside the locks: the slow part.
        tokens = analyzer(tokenizer).tokenize_many([record.searchable_text for record in records])
        self._write(index, {"add": [[r.id for r in records], [chunk_payload(r) for r in records], tokens]})

    def delete_document(self, index: str, document_id: str) -> None:
        if keyword_corpus.exists(self._folder(index)):
            self._write(index, {"delete": document_id})

    def search(
        self, index: str, query: str, limit: int, flt: SearchFilter | None = None, tokenizer: str = DEFAULT_TOKENIZER
    ) -> list[Hit]:
        if limit < 1:
            return []
        terms = analyzer(tokenizer).tokenize(query)
        state = self._state(index)
        with state.lock:
            corpus = self._fresh(index, state)
            if corpus is None or not len(corpus):
                return []
            term_ids = corpus.query_terms(terms)
            mask = corpus.filter_mask(flt)
            if not term_ids or (mask is not None and not mask.any()):
                return []
            if state.scorer_version != corpus.version:  # the first search, or another process wrote
                state.scorer = self._build_scorer(corpus, self._folder(index), for_index(index))
                state.scorer_version = corpus.version
            # A consistent snapshot: writers publish new corpus objects and never edit a published one.
            scorer, ids, payloads = state.scorer, corpus.ids, corpus.payloads
            state.searched = True
        # Scoring runs outside the lock, so concurrent queries score in parallel rather than one at a time.
        scores = self._scores(scorer, term_ids)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        rows = top_positive(scores, limit)
        return [Hit(id=ids[row], score=float(scores[row]), payload=dict(payloads[row])) for row in rows]

    def count(self, index: str) -> int:
        state = self._state(index)
        with state.lock:
            corpus = self._fresh(index, state)
            return len(corpus) if corpus is not None else 0

    def drop(self, index: str) -> None:
        folder = self._folder(index)
        state = self._state(index)
        with state.write_lock:  # the writers' lock order: write lock, flock, state lock
            if folder.exists():
                # No search caches a matrix inside the folder while it goes.
                with keyword_corpus.writer_lock(folder), state.lock:
                    shutil.rmtree(folder)
            with state.lock:
                state.corpus, state.stamp, state.scorer, state.scorer_version = None, None, None, ""

    def close(self) -> None:
        """Nothing is pending: every write is saved when it happens. Frees the in-memory copies."""
        with self._lock:
            self._states.clear()
