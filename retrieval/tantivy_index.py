"""Keyword index on tantivy (the Rust search engine, official Python bindings): segments instead of a matrix.

One tantivy index per platform index under ``root/<index>/``. A write costs its own size: new chunks go to a
new segment, deletes mark documents in their segment, and tantivy merges segments in its own threads, so
adding or deleting a document never rebuilds what is already indexed (bm25s re-scores every row).

Analysis is the platform's (``retrieval.text_analysis``, the index's recorded tokenizer): text is analyzed
here and its terms are indexed through tantivy's whitespace tokenizer, so a term is exactly what the other
backends see. Query terms become term queries, repeats kept (as weights), as bm25s counts them.

Scoring: tantivy's own BM25 is fixed at k1 1.2 / b 0.75 in the bindings (``TANTIVY_BM25``), and chunks
ranked by it lose hybrid nDCG@10 on SciFact against the chunks' ``bm25_params`` (bench/keyword_engines.py).
So tantivy only picks the candidates: its best matches (``rescore_depth``, by default ``RESCORE_FACTOR`` times
the hits asked for) are re-scored with Lucene's BM25 at the index's ``bm25_params`` (``lucene_bm25``, the
formula bm25s and rank-bm25 use, over all candidates at once) from each candidate's stored term hashes
(``term_counts``), its length (a fast field, read for all candidates in one call), the live corpus's mean length
(a fast-field average, once per commit) and tantivy's document frequencies. A chunk that ranks within the depth
under the platform's parameters but not under tantivy's is missed; with fewer matches than the depth the ranking
is exact. Document frequencies still count a deleted chunk until its segment is merged.

The document field (``search_documents``) is the exception: its BM25 pair (``bm25_params.DOCUMENTS``) is
tantivy's own, so tantivy's scores are used as they are (divided by its constant factor 1 + k1), up to tantivy's
one-byte length norms (exact to 40 terms, then within a few percent) and its corpus statistics (the row count
and mean length count deleted rows until their segment is merged). Each row's document key is a fast field,
read for all rows in one call, and only the rows the ranking keeps are read (``DocumentHits``).

Cost of a search: one stored-document read per candidate (its term hashes, chunk id and payload come from
that one read); only the returned hits decode their payload. Time grows with the depth, not with the corpus,
beyond tantivy's own top-k search.

Filters are tantivy queries with a zero score (``SearchFilter.matches`` semantics), required beside the
terms, so filtering happens before ranking and never changes a score.

Writes: each ``add`` / ``delete_document`` takes this process's per-index lock and a cross-process flock,
opens a writer with a bounded heap, commits, waits for the merges it started, and releases the writer
(tantivy allows one writer per index across processes, so none is held between writes). Searches use a
searcher (a snapshot of the committed segments), reloaded when ``meta.json`` changed, so they see every
process's commits and never wait on a write.

Upgrades: an index folder that still holds another layout (a bm25s / rank-bm25 corpus, or a tantivy index
of an earlier schema) is imported into this schema on its first use in a process (``_migrate``), under the
write lock; the old files go only once the import is committed, so a crash midway imports again. An index
written before the ``DOCUMENT_KEY`` field cannot be imported (its terms are not stored): it is searched as it
is, its document field reading every row it ranks for the row's document, until a re-index writes the field
(so is a row without the key that a process of the earlier version adds to an index that has it).
"""

from __future__ import annotations

import fcntl
import json
import math
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import tantivy

from core.ids import stable_hash64
from core.types import ChunkRecord, Hit, SearchFilter
from retrieval import keyword_corpus
from retrieval.bm25_params import Bm25Params, for_index
from retrieval.document_field import DocumentHits, document_index, document_key, document_of
from retrieval.payload import check_index_name, chunk_payload
from retrieval.text_analysis import DEFAULT_TOKENIZER, analyzer

RESCORE_FACTOR = 1.25
"""By default tantivy's best ``RESCORE_FACTOR`` x ``limit`` matches are re-scored at the index's parameters (250 of
the fusion's 200 candidates): the smallest margin at which nDCG@10 through the platform did not drop on SciFact and
ClapNQ-dev. ``bench/tantivy_rescore_depth.py`` measures the share of the exact ranking found per depth."""
WRITER_HEAP_BYTES = 64_000_000
"""Indexing memory of one writer; beyond it tantivy flushes a segment (tantivy's floor is 15 MB)."""
TANTIVY_BM25 = Bm25Params(k1=1.2, b=0.75)
"""The pair tantivy scores with (fixed in its bindings); its score is ``1 + k1`` times ``lucene_bm25``'s."""
DOCUMENT_KEY = "document_key"
"""Fast field: the row's ``document_field.document_key``, so the document field names documents without reads."""
_META = "meta.json"
_LOCK = ".write.lock"
_KEYWORD_FIELDS = ("document_id", "filename", "tags")


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    for field in _KEYWORD_FIELDS:
        builder.add_text_field(field, tokenizer_name="raw", index_option="basic")
    builder.add_float_field("uploaded_at", indexed=True, fast=True)
    # Term frequencies and field norms are what BM25 reads; positions would only serve phrase queries.
    builder.add_text_field("terms", tokenizer_name="whitespace", index_option="freq")
    # The terms again, as stored 64-bit hashes with their counts (``term_hashes``): the re-scoring counts the
    # query's terms in all candidates at once with numpy (``term_counts``).
    builder.add_bytes_field("term_hashes", stored=True)
    builder.add_unsigned_field("length", fast=True)  # terms in the chunk: the corpus's mean length
    builder.add_bytes_field("payload", stored=True)
    # Last, so an index written before it has every other field at the same position (it is searched alike).
    builder.add_unsigned_field(DOCUMENT_KEY, fast=True)
    return builder.build()


SCHEMA = _schema()


def term_hash(term: str) -> int:
    """A term's 64-bit hash (``stable_hash64``), as its chunk's stored ``term_hashes`` hold it."""
    return stable_hash64(term)


TERM_COUNT = np.dtype([("hash", "<u8"), ("count", "<u4")])
"""One distinct term of a chunk in its stored ``term_hashes``: the term's hash and how often the chunk has it."""


def term_hashes(terms: Sequence[str]) -> bytes:
    """``terms`` as ``TERM_COUNT`` records, one per distinct term: a whole document's row stores each term once."""
    counted = Counter(terms)
    records = np.empty(len(counted), dtype=TERM_COUNT)
    records["hash"] = np.fromiter((term_hash(term) for term in counted), dtype="<u8", count=len(counted))
    records["count"] = np.fromiter(counted.values(), dtype="<u4", count=len(counted))
    return records.tobytes()


def term_counts(bags: Sequence[bytes], hashes: np.ndarray) -> np.ndarray:
    """How often each of ``hashes`` (distinct term hashes) occurs in each bag of ``term_hashes``: one row per
    bag, one column per hash. Vectorized over all bags at once; two distinct terms share a hash with odds
    of about 2^-64 per pair."""
    counts = np.zeros((len(bags), len(hashes)), dtype=np.float64)
    if not bags or not len(hashes):
        return counts
    stored = np.frombuffer(b"".join(bags), dtype=TERM_COUNT)
    found = np.flatnonzero(np.isin(stored["hash"], hashes))  # a few query terms: one vectorized == per term
    if not len(found):
        return counts
    ends = np.cumsum([len(bag) // TERM_COUNT.itemsize for bag in bags])
    order = np.argsort(hashes)
    columns = order[np.searchsorted(hashes[order], stored["hash"][found])]
    counts[np.searchsorted(ends, found, side="right"), columns] = stored["count"][found]  # a term once per bag
    return counts


def _row(chunk_id: str, payload: dict[str, Any], terms: Sequence[str]) -> tantivy.Document:
    doc = tantivy.Document()
    doc.add_text("chunk_id", chunk_id)
    for field in ("document_id", "filename"):
        value = payload.get(field)
        if isinstance(value, str):
            doc.add_text(field, value)
    for tag in dict.fromkeys(payload.get("tags") or ()):
        doc.add_text("tags", str(tag))
    uploaded = payload.get("uploaded_at")
    if isinstance(uploaded, int | float) and not isinstance(uploaded, bool):
        doc.add_float("uploaded_at", float(uploaded))
    doc.add_text("terms", " ".join(terms))  # analyzed terms never contain whitespace
    doc.add_bytes("term_hashes", term_hashes(terms))
    doc.add_unsigned("length", len(terms))
    doc.add_bytes("payload", orjson.dumps(payload))
    doc.add_unsigned(DOCUMENT_KEY, document_key(str(payload.get("document_id", chunk_id))))
    return doc


def filter_query(flt: SearchFilter) -> tantivy.Query | None:
    """``flt`` as one tantivy query (None: admits everything), with the semantics of ``SearchFilter.matches``."""
    clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
    for field, wanted in (("document_id", flt.document_ids), ("filename", flt.filenames), ("tags", flt.tags)):
        if wanted:
            clauses.append((tantivy.Occur.Must, tantivy.Query.term_set_query(SCHEMA, field, list(wanted))))
    if flt.uploaded_after is not None or flt.uploaded_before is not None:
        after, before = flt.uploaded_after, flt.uploaded_before
        span = tantivy.Query.range_query(
            SCHEMA,
            "uploaded_at",
            tantivy.FieldType.Float,
            lower_bound=after.timestamp() if after is not None else None,
            upper_bound=before.timestamp() if before is not None else None,
        )
        clauses.append((tantivy.Occur.Must, span))
    if not clauses:
        return None
    return tantivy.Query.const_score_query(tantivy.Query.boolean_query(clauses), 0.0)


def terms_query(terms: Sequence[str]) -> tantivy.Query:
    """A disjunction of the query's terms, each weighted by how often the query repeats it."""
    clauses = []
    for term, n in Counter(terms).items():
        query = tantivy.Query.term_query(SCHEMA, "terms", term, index_option="freq")
        clauses.append((tantivy.Occur.Should, query if n == 1 else tantivy.Query.boost_query(query, float(n))))
    return tantivy.Query.boolean_query(clauses)


def _query(terms: Sequence[str], flt: SearchFilter | None) -> tantivy.Query:
    """The query's terms (``terms_query``), restricted to what ``flt`` admits."""
    candidates = terms_query(terms)
    admitted = filter_query(flt) if flt is not None else None
    if admitted is None:
        return candidates
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, candidates), (tantivy.Occur.Must, admitted)])


def lucene_bm25(
    counts: np.ndarray, lengths: np.ndarray, weights: np.ndarray, avg_len: float, params: Bm25Params
) -> np.ndarray:
    """Lucene's BM25 at ``params`` of each chunk (a row of ``counts``: its count of every query term; its
    ``lengths`` entry) for query terms weighted by idf times their repeats in the query, as bm25s computes it."""
    norm = params.k1 * (1 - params.b + params.b * lengths / avg_len)
    return (weights * counts / (counts + norm[:, None])).sum(axis=1)


def idf(doc_freq: int, n: int) -> float:
    """Lucene's idf, never negative (tantivy's doc freq may count deleted chunks beyond the ``n`` live ones)."""
    return math.log(1 + (max(n, doc_freq) - doc_freq + 0.5) / (doc_freq + 0.5))


def _stamp(folder: Path) -> tuple[int, int, int, int] | None:
    """Changes whenever a commit (in any process) replaces ``meta.json``, or the folder is recreated."""
    try:
        st = (folder / _META).stat()
        return folder.stat().st_ino, st.st_ino, st.st_mtime_ns, st.st_size
    except FileNotFoundError:
        return None


@contextmanager
def _flock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / _LOCK, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards the fields below; held for lookups and swaps only
        self.write_lock = threading.Lock()  # one writer per index in this process
        self.index: tantivy.Index | None = None
        self.searcher: tantivy.Searcher | None = None
        self.avg_len: float | None = None  # the searcher's mean chunk length, computed on its first search
        self.stamp: tuple[int, int, int, int] | None = None
        self.keyed = False  # the index has the ``DOCUMENT_KEY`` field (one written before it has not)
        self.migrated = False  # ``_migrate`` ran for this index in this process


class TantivyIndex:
    """``KeywordIndex`` on tantivy: one index folder per platform index, documents keyed by chunk id."""

    name = "tantivy"

    def __init__(self, root: Path, rescore_depth: int | None = None) -> None:
        """``rescore_depth``: tantivy's matches re-scored per search; None: ``RESCORE_FACTOR`` x the limit."""
        self._root = Path(root)
        self._rescore_depth = rescore_depth
        self._root.mkdir(parents=True, exist_ok=True)
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def _folder(self, index: str) -> Path:
        return self._root / check_index_name(index)

    def _depth(self, limit: int) -> int:
        depth = self._rescore_depth if self._rescore_depth is not None else math.ceil(RESCORE_FACTOR * limit)
        return max(depth, limit)

    def _state(self, index: str) -> _State:
        """``index``'s state, its folder imported into this schema first if it holds another layout."""
        with self._lock:
            state = self._states.setdefault(index, _State())
        if not state.migrated:
            with state.write_lock:
                if not state.migrated:
                    _migrate(self._folder(index))
                    state.migrated = True
        return state

    def _searcher(self, index: str, state: _State) -> tantivy.Searcher | None:
        """The searcher of the latest commit (any process's); None while the index does not exist. Under
        ``state.lock``."""
        folder = self._folder(index)
        stamp = _stamp(folder)
        if stamp != state.stamp:
            if stamp is None:
                state.index = state.searcher = None
            else:
                if state.index is None or state.stamp is None or state.stamp[0] != stamp[0]:
                    state.index = tantivy.Index.open(str(folder))
                    state.index.config_reader(reload_policy="manual")
                state.index.reload()
                state.searcher = state.index.searcher()
                state.keyed = DOCUMENT_KEY in (_schema_fields(folder) or ())
            state.avg_len = None
            state.stamp = stamp
        return state.searcher

    @contextmanager
    def _writer(self, index: str) -> Iterator[tantivy.IndexWriter]:
        """A writer on ``index`` (created if missing) for one commit, then released for other processes."""
        folder = self._folder(index)
        state = self._state(index)
        with state.write_lock, _flock(folder):
            with state.lock:
                self._searcher(index, state)
                if state.index is None:
                    state.index = tantivy.Index(SCHEMA, path=str(folder), reuse=True)
                    state.index.config_reader(reload_policy="manual")
                    state.stamp = None
                tantivy_index = state.index
            with _committing(tantivy_index) as writer:
                yield writer
            with state.lock:
                self._searcher(index, state)  # searchable once the write returns

    def add(self, index: str, records: Sequence[ChunkRecord], tokenizer: str = DEFAULT_TOKENIZER) -> None:
        if not records:
            return
        unique = list({record.id: record for record in records}.values())  # the last one of an id wins
        terms = analyzer(tokenizer).tokenize_many([record.searchable_text for record in unique])
        with self._writer(index) as writer:
            for record, words in zip(unique, terms, strict=True):
                writer.delete_documents_by_term("chunk_id", record.id)  # overwrite by chunk id
                writer.add_document(_row(record.id, chunk_payload(record), words))

    def delete_document(self, index: str, document_id: str) -> None:
        self._state(index)
        if _stamp(self._folder(index)) is None:
            return
        with self._writer(index) as writer:
            writer.delete_documents_by_term("document_id", document_id)

    def search(
        self, index: str, query: str, limit: int, flt: SearchFilter | None = None, tokenizer: str = DEFAULT_TOKENIZER
    ) -> list[Hit]:
        if limit < 1:
            return []
        terms = analyzer(tokenizer).tokenize(query)
        if not terms:
            return []
        state = self._state(index)
        with state.lock:
            searcher = self._searcher(index, state)
            if searcher is None or not searcher.num_docs:
                return []
            if state.avg_len is None:
                state.avg_len = _mean_length(searcher)
            avg_len = state.avg_len
        # The searcher is a snapshot of committed segments: addresses and stored documents stay consistent.
        found = searcher.search(_query(terms, flt), self._depth(limit), count=False).hits
        if not found:
            return []
        addresses = [address for _, address in found]
        n = searcher.num_docs
        query_terms = Counter(terms)
        weights = np.array([repeats * idf(searcher.doc_freq("terms", t), n) for t, repeats in query_terms.items()])
        hashes = np.array([term_hash(term) for term in query_terms], dtype=np.uint64)
        docs = [searcher.doc(address) for address in addresses]  # one stored read per candidate
        counts = term_counts([doc.get_first("term_hashes") for doc in docs], hashes)
        lengths = np.array(searcher.fast_field_values("length", addresses), dtype=np.float64)
        scores = lucene_bm25(counts, lengths, weights, avg_len, for_index(index)).tolist()
        chunk_ids = [doc.get_first("chunk_id") for doc in docs]
        # Ties to the smaller chunk id, in every process; only the returned hits decode their payload.
        ranked = sorted(range(len(docs)), key=lambda row: (-scores[row], chunk_ids[row]))[:limit]
        return [
            Hit(id=chunk_ids[row], score=scores[row], payload=orjson.loads(docs[row].get_first("payload")))
            for row in ranked
        ]

    def search_documents(
        self, index: str, query: str, limit: int, flt: SearchFilter | None = None, tokenizer: str = DEFAULT_TOKENIZER
    ) -> DocumentHits:
        """tantivy's own ranking of ``index``'s document rows (see the module doc): no row is read to score."""
        nothing = DocumentHits.of([])
        terms = analyzer(tokenizer).tokenize(query)
        if limit < 1 or not terms:
            return nothing
        name = document_index(index)
        state = self._state(name)
        with state.lock:
            searcher = self._searcher(name, state)
            keyed = state.keyed
        if searcher is None or not searcher.num_docs:
            return nothing
        found = searcher.search(_query(terms, flt), limit, count=False).hits
        addresses = [address for _, address in found]
        scores = [score / (1 + TANTIVY_BM25.k1) for score, _ in found]

        def rows(positions: Sequence[int]) -> list[Hit]:
            docs = [(p, searcher.doc(addresses[p])) for p in positions]
            return [
                Hit(id=doc.get_first("chunk_id"), score=scores[p], payload=orjson.loads(doc.get_first("payload")))
                for p, doc in docs
            ]

        keys = searcher.fast_field_values(DOCUMENT_KEY, addresses) if keyed else [None] * len(found)
        # Rows without a key (an index written before the field, or a row an older process added) are read for it.
        unkeyed = [p for p, key in enumerate(keys) if key is None]
        for p, row in zip(unkeyed, rows(unkeyed), strict=True):
            keys[p] = document_key(document_of(row))
        return DocumentHits(keys, scores, rows)

    def count(self, index: str) -> int:
        state = self._state(index)
        with state.lock:
            searcher = self._searcher(index, state)
        return searcher.num_docs if searcher is not None else 0

    def drop(self, index: str) -> None:
        folder = self._folder(index)
        state = self._state(index)
        with state.write_lock:
            if folder.exists():
                with _flock(folder), state.lock:
                    shutil.rmtree(folder)
            with state.lock:
                state.index = state.searcher = state.stamp = None

    def close(self) -> None:
        """Nothing is pending: every write commits, and waits for its merges, before it returns."""
        with self._lock:
            self._states.clear()


@contextmanager
def _committing(index: tantivy.Index) -> Iterator[tantivy.IndexWriter]:
    """A writer for one commit: committed if the block ends normally, rolled back if it raises."""
    writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
    try:
        yield writer
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
    finally:
        # The merges this commit started finish before the writer goes, or the next writer redoes them.
        writer.wait_merging_threads()


def _mean_length(searcher: tantivy.Searcher) -> float:
    """Mean terms per live chunk (deleted ones excluded); at least 1 so an index of empty chunks divides."""
    stats = searcher.aggregate(tantivy.Query.all_query(), {"length": {"avg": {"field": "length"}}})
    return max(float(stats["length"]["value"] or 0.0), 1.0)


LegacyRow = tuple[str, dict[str, Any], list[str]]
"""A chunk of an index in another layout: its id, payload and analyzed terms."""


def _schema_fields(folder: Path) -> set[str] | None:
    """The field names of the tantivy index in ``folder`` (from its ``meta.json``); None if there is none."""
    try:
        meta = json.loads((folder / _META).read_text())
    except FileNotFoundError:
        return None
    return {field["name"] for field in meta["schema"]}


def _is_legacy(folder: Path) -> bool:
    """Whether ``folder`` holds a keyword index in a layout other than this module's schema."""
    fields = _schema_fields(folder)
    return keyword_corpus.exists(folder) or (fields is not None and "term_hashes" not in fields)


def _legacy_rows(folder: Path) -> Iterator[LegacyRow]:
    """Every chunk of the index in ``folder``: a corpus (bm25s / rank-bm25 layout) or an earlier tantivy
    schema that stored each chunk's terms as ``b"<term><term>..."`` in a ``bag`` field."""
    if keyword_corpus.exists(folder):
        corpus = keyword_corpus.KeywordCorpus.load(folder)
        words = list(corpus.vocab)  # in id order: ids were given as the vocabulary grew
        for chunk_id, payload, term_ids in zip(corpus.ids, corpus.payloads, corpus.terms, strict=True):
            yield chunk_id, payload, [words[term] for term in term_ids.tolist()]
        return
    old = tantivy.Index.open(str(folder))
    searcher = old.searcher()
    if not searcher.num_docs:
        return
    for _, address in searcher.search(tantivy.Query.all_query(), searcher.num_docs, count=False).hits:
        doc = searcher.doc(address)
        bag = doc.get_first("bag").decode()
        terms = _BAG_TERM.findall(bag)
        yield doc.get_first("chunk_id"), orjson.loads(doc.get_first("payload")), terms


_BAG_TERM = re.compile(r"<([^<>]*)>")


def _migrate(folder: Path) -> None:
    """Import the index in ``folder`` into this schema if it holds another layout (see the module doc).

    Under a flock on the root, so every process of this version waits until it is done and none reads the
    old layout meanwhile. The new index is built beside the folder (``.<name>.importing``) and swapped in
    by two renames; a crash before the swap leaves the old folder as it was (imported again next time), one
    between the renames is finished here on the next call.
    """
    staging = folder.with_name(f".{folder.name}.importing")
    retired = folder.with_name(f".{folder.name}.retired")
    with _flock(folder.parent):
        if retired.exists() and not folder.exists():
            staging.rename(folder)  # the swap was cut between its renames: the staged index is complete
        shutil.rmtree(retired, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        if not folder.exists() or not _is_legacy(folder):
            return
        staging.mkdir()
        with _committing(tantivy.Index(SCHEMA, path=str(staging))) as writer:
            for chunk_id, payload, terms in _legacy_rows(folder):
                writer.add_document(_row(chunk_id, payload, terms))
        folder.rename(retired)
        staging.rename(folder)
        shutil.rmtree(retired)
