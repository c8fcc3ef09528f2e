"""The token corpus of one keyword index on disk: a SQLite database in WAL mode.

Every BM25 backend in this process (bm25s, rank-bm25) ranks the same ``KeywordCorpus``: per chunk, its id,
payload and analyzed terms as ids over a growing vocabulary, so adding or deleting chunks never
re-tokenizes the rest. Layout under ``root/<index>/``:

    corpus.sqlite (+ -wal, -shm)  chunks (row order = insertion order; an overwritten chunk keeps its row),
                                  the vocabulary (term id -> word) and the corpus version
    .lock                         flock taken by writers (``writer_lock``), so a writer's in-memory corpus
                                  is the database's latest state when it applies its change

A write is one transaction of its own size (the chunks it adds, or one indexed DELETE), committed with
``synchronous=FULL`` so it is on disk when the write returns; a writer killed mid-write or a torn WAL frame
leaves the last committed state (SQLite's WAL checksums and rollback). Readers compare the version (and the
database's inode) with what they loaded and reload when another process committed a write.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from core.types import SearchFilter

_DB = "corpus.sqlite"
_LOCK = ".lock"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, document_id TEXT, payload TEXT NOT NULL, terms BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS vocab (term_id INTEGER PRIMARY KEY, word TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
Stamp = tuple[int, str] | None  # the database's inode and the corpus version; None: no database


class _Connections:
    """One connection per database for this process's writes and one for its version checks.

    Kept open: closing the last connection to a WAL database checkpoints and deletes the WAL, which would
    turn every write into a full checkpoint. Loads use a connection of their own (see ``KeywordCorpus.load``)
    so they never see a writer's uncommitted rows.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[tuple[Path, str], tuple[int, sqlite3.Connection]] = {}

    def get(self, folder: Path, role: str) -> sqlite3.Connection:
        path = folder / _DB
        with self.lock:
            inode = path.stat().st_ino if path.exists() else -1
            held = self.open.get((folder, role))
            if held is not None and held[0] == inode:
                return held[1]
            if held is not None:
                held[1].close()  # the database was dropped and made again, maybe by another process
            connection = _connect(path)
            self.open[(folder, role)] = (path.stat().st_ino, connection)
            return connection

    def release(self, folder: Path) -> None:
        with self.lock:
            for key in [key for key in self.open if key[0] == folder]:
                self.open.pop(key)[1].close()


_connections = _Connections()


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(_SCHEMA)
    return connection


def stamp(folder: Path) -> Stamp:
    """What changes whenever any process commits a write: the corpus version (and the database's identity)."""
    path = folder / _DB
    if not path.exists():
        return None
    connection = _connections.get(folder, "check")
    with _connections.lock:
        found = connection.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return path.stat().st_ino, found[0] if found else ""


def release(folder: Path) -> None:
    """Close this process's connections to the index in ``folder`` (before it is deleted)."""
    _connections.release(folder)


class KeywordCorpus:
    """One index's chunks in insertion order: ids, payloads and term ids over a growing vocabulary.

    Row positions are what scorers rank; ties go to the earlier row, the same in every backend.
    """

    def __init__(self) -> None:
        self.version = ""
        self.ids: list[str] = []
        self.payloads: list[dict[str, Any]] = []
        self.terms: list[np.ndarray] = []
        self.vocab: dict[str, int] = {}
        self._positions: dict[str, int] = {}
        self._columns: _FilterColumns | None = None
        self.stored_vocab = 0  # vocabulary entries already in the database: a write adds the rest

    def __len__(self) -> int:
        return len(self.ids)

    def copy(self) -> KeywordCorpus:
        """What a writer edits while searches go on reading this one (rows' term arrays are shared:
        edits replace them, never change them in place)."""
        twin = KeywordCorpus()
        twin.version = self.version
        twin.ids, twin.payloads, twin.terms = list(self.ids), list(self.payloads), list(self.terms)
        twin.vocab, twin._positions = dict(self.vocab), dict(self._positions)
        twin.stored_vocab = self.stored_vocab
        return twin

    def apply(self, change: dict[str, Any]) -> bool:
        """The one way a corpus changes, live and when a log is replayed, so both end in the same state.
        ``{"add": [ids, payloads, tokens]}`` or ``{"delete": document_id}``; False if nothing changed."""
        if "add" in change:
            self.add(*change["add"])
            return True
        return self.delete_document(change["delete"])

    def add(self, ids: Sequence[str], payloads: Sequence[dict[str, Any]], tokens: Sequence[Sequence[str]]) -> None:
        """Insert or overwrite by id; an overwritten chunk keeps its row."""
        for chunk_id, payload, words in zip(ids, payloads, tokens, strict=True):
            term_ids = np.fromiter(
                (self.vocab.setdefault(word, len(self.vocab)) for word in words), dtype=np.int32, count=len(words)
            )
            row = self._positions.get(chunk_id)
            if row is None:
                self._positions[chunk_id] = len(self.ids)
                self.ids.append(chunk_id)
                self.payloads.append(payload)
                self.terms.append(term_ids)
            else:
                self.payloads[row] = payload
                self.terms[row] = term_ids
        self._columns = None

    def delete_document(self, document_id: str) -> bool:
        keep = [row for row, payload in enumerate(self.payloads) if payload.get("document_id") != document_id]
        if len(keep) == len(self.ids):
            return False
        self.ids = [self.ids[row] for row in keep]
        self.payloads = [self.payloads[row] for row in keep]
        self.terms = [self.terms[row] for row in keep]
        self._positions = {chunk: row for row, chunk in enumerate(self.ids)}
        self._columns = None
        return True

    def query_terms(self, terms: Sequence[str]) -> list[int]:
        """Vocabulary ids of the query's terms, repeats kept (BM25 counts them); unknown terms dropped."""
        return [self.vocab[word] for word in terms if word in self.vocab]

    def filter_mask(self, flt: SearchFilter | None) -> np.ndarray | None:
        """Rows ``flt`` admits (same semantics as ``SearchFilter.matches``); None means all rows."""
        if flt is None or flt.is_empty():
            return None
        if self._columns is None:
            self._columns = _FilterColumns(self.payloads)
        return self._columns.mask(flt, len(self.ids))

    def persist(self, folder: Path, change: dict[str, Any]) -> None:
        """Commit ``change`` (already applied here) under a new version, in one transaction."""
        version = uuid.uuid4().hex
        connection = _connections.get(folder, "write")
        connection.execute("BEGIN IMMEDIATE")
        try:
            if "add" in change:
                ids, payloads, _ = change["add"]
                if len(self.vocab) > self.stored_vocab:
                    words = list(self.vocab)[self.stored_vocab :]
                    connection.executemany(
                        "INSERT INTO vocab (term_id, word) VALUES (?, ?)", enumerate(words, self.stored_vocab)
                    )
                rows = [self._positions[chunk_id] for chunk_id in ids]
                connection.executemany(
                    "INSERT INTO chunks (id, document_id, payload, terms) VALUES (?, ?, ?, ?) ON CONFLICT (id)"
                    " DO UPDATE SET document_id = excluded.document_id, payload = excluded.payload,"
                    " terms = excluded.terms",
                    [
                        (chunk_id, payload.get("document_id"), json.dumps(payload), self.terms[row].tobytes())
                        for chunk_id, payload, row in zip(ids, payloads, rows, strict=True)
                    ],
                )
            else:
                connection.execute("DELETE FROM chunks WHERE document_id = ?", (change["delete"],))
            connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)", (version,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        self.version, self.stored_vocab = version, len(self.vocab)

    @classmethod
    def load(cls, folder: Path) -> KeywordCorpus:
        """The committed corpus, read in one transaction on a connection of its own."""
        corpus = cls()
        connection = _connect(folder / _DB)
        try:
            connection.execute("BEGIN")
            found = connection.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
            corpus.version = found[0] if found else ""
            words = [word for (word,) in connection.execute("SELECT word FROM vocab ORDER BY term_id")]
            rows = connection.execute("SELECT id, payload, terms FROM chunks ORDER BY row").fetchall()
            connection.execute("COMMIT")
        finally:
            connection.close()
        corpus.vocab = {word: i for i, word in enumerate(words)}
        corpus.stored_vocab = len(words)
        corpus.ids = [chunk_id for chunk_id, _, _ in rows]
        # One parse of all payloads: half the time of one json.loads per row.
        corpus.payloads = json.loads("[" + ",".join([payload for _, payload, _ in rows]) + "]")
        corpus.terms = [np.frombuffer(terms, dtype=np.int32) for _, _, terms in rows]
        corpus._positions = {chunk: row for row, chunk in enumerate(corpus.ids)}
        return corpus


class _FilterColumns:
    """Inverted lists of the filterable payload fields, so a filter costs its matches, not a scan."""

    def __init__(self, payloads: Sequence[dict[str, Any]]) -> None:
        self.by_field: dict[str, dict[str, list[int]]] = {"document_id": {}, "filename": {}, "tags": {}}
        self.uploaded = np.full(len(payloads), np.nan)
        for row, payload in enumerate(payloads):
            for field in ("document_id", "filename"):
                value = payload.get(field)
                if value is not None:
                    self.by_field[field].setdefault(value, []).append(row)
            for tag in set(payload.get("tags") or ()):
                self.by_field["tags"].setdefault(tag, []).append(row)
            uploaded = payload.get("uploaded_at")
            if isinstance(uploaded, int | float) and not isinstance(uploaded, bool):
                self.uploaded[row] = uploaded

    def mask(self, flt: SearchFilter, n: int) -> np.ndarray:
        mask = np.ones(n, dtype=bool)
        for field, wanted in (("document_id", flt.document_ids), ("filename", flt.filenames), ("tags", flt.tags)):
            if wanted:
                admitted = np.zeros(n, dtype=bool)
                for value in wanted:
                    admitted[self.by_field[field].get(value, [])] = True
                mask &= admitted
        # NaN (no upload time) fails both comparisons, as in SearchFilter.matches.
        with np.errstate(invalid="ignore"):
            if flt.uploaded_after is not None:
                mask &= self.uploaded >= flt.uploaded_after.timestamp()
            if flt.uploaded_before is not None:
                mask &= self.uploaded <= flt.uploaded_before.timestamp()
        return mask


def exists(folder: Path) -> bool:
    """Whether an index was ever written here."""
    return (folder / _DB).exists()


@contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """The cross-process write lock of the index in ``folder`` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / _LOCK, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield
