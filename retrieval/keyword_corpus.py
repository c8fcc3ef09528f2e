"""The token corpus of one keyword index on disk: a snapshot plus an append-only log of changes.

Every BM25 backend in this process (bm25s, rank-bm25) ranks the same ``KeywordCorpus``: per chunk, its id,
payload and analyzed terms as ids over a growing vocabulary, so adding or deleting chunks never
re-tokenizes the rest. Layout under ``root/<index>/``:

    corpus.npz          snapshot: ids, payloads, vocabulary, term ids, and the id of its log
    corpus.log          the changes since that snapshot (chunks added, documents deleted), appended by each
                        write, so a write costs its own size, not the index's; replayed on load. Once it
                        outgrows the snapshot, a write replaces both (atomically, the snapshot first)
    .lock               flock taken by writers (``writer_lock``), so processes never interleave writes

Log entries are framed (length, CRC-32, JSON body) and fsynced before a write returns: a torn or
half-written last entry (a writer killed mid-append) ends the log there and is cut off by the next append;
a log naming another snapshot (a crash between a snapshot and its fresh log) counts as empty. Readers
compare both files' inode/mtime/size (``stamp``) with what they loaded and reload when another process
wrote them.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import tempfile
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from core.types import SearchFilter

_CORPUS = "corpus.npz"
_LOG = "corpus.log"
_LOCK = ".lock"
# A write appends its change to the log; once the log outgrows the snapshot (and this floor), the next write
# rewrites the snapshot instead, so appends stay O(change) and rewrites amortize to O(1) per chunk.
SNAPSHOT_AFTER_LOG_BYTES = 4 << 20
_ENTRY_HEADER = struct.Struct("<II")  # length, crc32 of the JSON body that follows


Stamp = tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def stamp(folder: Path) -> Stamp:
    """What changes whenever any process writes the index: the snapshot's and the log's identity and size."""
    return _file_stamp(folder / _CORPUS), _file_stamp(folder / _LOG)


def _fsync_write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: readers in other processes see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _log_entry(entry: dict[str, Any]) -> bytes:
    body = json.dumps(entry, separators=(",", ":")).encode()
    return _ENTRY_HEADER.pack(len(body), zlib.crc32(body)) + body


def _read_log(path: Path, log_id: str) -> tuple[list[dict[str, Any]], int]:
    """The log's whole entries and where they end. The first entry names the snapshot the log extends; a log
    of another snapshot (a crash between a snapshot and its fresh log) counts as empty. A torn or half-written
    last entry ends the log there: a crashed writer's, or one still being appended by another process."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries: list[dict[str, Any]] = []
    position = 0
    while position + _ENTRY_HEADER.size <= len(data):
        length, crc = _ENTRY_HEADER.unpack_from(data, position)
        body = data[position + _ENTRY_HEADER.size : position + _ENTRY_HEADER.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        entries.append(json.loads(body))
        position += _ENTRY_HEADER.size + length
    if not entries or entries[0].get("log") != log_id:
        return [], 0
    return entries[1:], position


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
        self.log_id: str | None = None  # the log this corpus's snapshot names; None: no snapshot with a log yet
        self.log_end = 0  # bytes of that log applied here: the next append goes there
        self.snapshot_bytes = 0

    def __len__(self) -> int:
        return len(self.ids)

    def copy(self) -> KeywordCorpus:
        """What a writer edits while searches go on reading this one (rows' term arrays are shared:
        edits replace them, never change them in place)."""
        twin = KeywordCorpus()
        twin.version = self.version
        twin.ids, twin.payloads, twin.terms = list(self.ids), list(self.payloads), list(self.terms)
        twin.vocab, twin._positions = dict(self.vocab), dict(self._positions)
        twin.log_id, twin.log_end, twin.snapshot_bytes = self.log_id, self.log_end, self.snapshot_bytes
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
        """Record ``change`` (already applied here) under a new version: appended to the log, or, once the log
        has outgrown the snapshot, as a new snapshot of the whole corpus."""
        self.version = uuid.uuid4().hex
        if self.log_id is None or self.log_end > max(SNAPSHOT_AFTER_LOG_BYTES, self.snapshot_bytes):
            self.save(folder)
        else:
            self._append(folder / _LOG, {**change, "version": self.version})

    def save(self, folder: Path) -> None:
        """A snapshot naming a fresh log, then that log (a crash between the two leaves an old log, which
        names another snapshot and is ignored)."""
        self.log_id = uuid.uuid4().hex
        offsets = np.zeros(len(self.terms) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in self.terms], out=offsets[1:])
        terms = np.concatenate(self.terms) if self.terms else np.zeros(0, dtype=np.int32)
        vocab = sorted(self.vocab, key=self.vocab.__getitem__)
        meta = {"version": self.version, "log": self.log_id, "ids": self.ids, "payloads": self.payloads, "vocab": vocab}
        buffer = io.BytesIO()
        np.savez(buffer, terms=terms, offsets=offsets, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        _fsync_write(folder / _CORPUS, buffer.getvalue())
        header = _log_entry({"log": self.log_id})
        _fsync_write(folder / _LOG, header)
        self.snapshot_bytes, self.log_end = buffer.tell(), len(header)

    def _append(self, path: Path, entry: dict[str, Any]) -> None:
        """Cut off whatever follows the entries this corpus holds (a crashed writer's torn entry), then append;
        a log that does not extend this snapshot (a crash right after the snapshot) starts over."""
        data = _log_entry(entry)
        if self.log_end == 0:
            data = _log_entry({"log": self.log_id}) + data
        # Created if missing: a crash can leave a first snapshot without its log.
        with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b") as f:
            f.truncate(self.log_end)
            f.seek(self.log_end)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.log_end += len(data)

    @classmethod
    def load(cls, folder: Path) -> KeywordCorpus:
        """The snapshot and its log replayed; retried if another process rewrote the snapshot meanwhile."""
        for _ in range(10):
            before = _file_stamp(folder / _CORPUS)
            corpus = cls._load_snapshot(folder / _CORPUS)
            entries, corpus.log_end = _read_log(folder / _LOG, corpus.log_id) if corpus.log_id else ([], 0)
            for entry in entries:
                corpus.apply(entry)
                corpus.version = entry["version"]
            if _file_stamp(folder / _CORPUS) == before:
                return corpus
        raise RuntimeError(f"the keyword index in {folder} keeps changing while it loads")

    @classmethod
    def _load_snapshot(cls, path: Path) -> KeywordCorpus:
        corpus = cls()
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes())
            terms, offsets = data["terms"], data["offsets"]
        corpus.version = meta["version"]
        corpus.log_id = meta.get("log")  # snapshots written before the log existed have none
        corpus.ids = meta["ids"]
        corpus.payloads = meta["payloads"]
        corpus.vocab = {word: i for i, word in enumerate(meta["vocab"])}
        corpus.terms = [terms[offsets[i] : offsets[i + 1]] for i in range(len(corpus.ids))]
        corpus._positions = {chunk: row for row, chunk in enumerate(corpus.ids)}
        corpus.snapshot_bytes = path.stat().st_size
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
    """Whether an index was ever written here (a snapshot is the first thing a write leaves)."""
    return (folder / _CORPUS).exists()


@contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """The cross-process write lock of the index in ``folder`` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / _LOCK, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield
