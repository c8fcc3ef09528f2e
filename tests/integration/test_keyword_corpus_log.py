"""The keyword corpus on disk: a snapshot plus an append-only log of changes (retrieval/keyword_corpus.py).

A write appends its change instead of rewriting the whole index; these tests check that appends really
leave the snapshot alone, that the snapshot is rewritten once the log outgrows it, and that a torn log
entry or a crash between a snapshot and its fresh log never loses or invents a chunk. A second
``Bm25sIndex`` on the same folder stands in for another process (separate memory).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import retrieval.keyword_corpus as keyword_files
from core.types import ChunkRecord, Hit
from retrieval.bm25s_index import Bm25sIndex

WORDS = ["marrow", "neutron", "yeast", "budget", "flour", "orbit", "membrane", "broth"]


def chunk(n: int) -> ChunkRecord:
    """Chunk ``n`` of document ``d<n // 3>``, with a word of its own so searches can find exactly it."""
    text = f"{WORDS[n % len(WORDS)]} word{n} shared text"
    return ChunkRecord(id=f"c{n}", text=text, payload={"document_id": f"d{n // 3}", "filename": f"f{n // 3}.txt"})


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def state(index: Bm25sIndex) -> dict[str, list[str]]:
    """What a reader sees: the hits of every chunk's own word (one query per chunk that was ever added)."""
    return {f"word{n}": ids(index.search("idx", f"word{n}", 5)) for n in range(40)}


def folder(tmp_path: Path) -> Path:
    return tmp_path / "idx"


def test_writes_append_to_the_log_and_leave_the_snapshot_alone(tmp_path: Path) -> None:
    writer = Bm25sIndex(tmp_path)
    writer.add("idx", [chunk(0), chunk(1)])
    snapshot = (folder(tmp_path) / "corpus.npz").stat()
    log_sizes = [(folder(tmp_path) / "corpus.log").stat().st_size]
    for n in range(2, 20):
        writer.add("idx", [chunk(n)])
        log_sizes.append((folder(tmp_path) / "corpus.log").stat().st_size)
    writer.delete_document("idx", "d1")
    after = (folder(tmp_path) / "corpus.npz").stat()
    assert (after.st_ino, after.st_mtime_ns) == (snapshot.st_ino, snapshot.st_mtime_ns)
    assert log_sizes == sorted(log_sizes) and len(set(log_sizes)) == len(log_sizes)
    reader = Bm25sIndex(tmp_path)
    assert reader.count("idx") == 20 - 3
    assert state(reader) == state(writer)
    assert ids(reader.search("idx", "word4", 5)) == []  # deleted with d1
    assert ids(reader.search("idx", "word19", 5)) == ["c19"]


def test_the_snapshot_is_rewritten_once_the_log_outgrows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_files, "SNAPSHOT_AFTER_LOG_BYTES", 0)
    writer = Bm25sIndex(tmp_path)
    inodes = set()
    for n in range(30):
        writer.add("idx", [chunk(n)])
        inodes.add((folder(tmp_path) / "corpus.npz").stat().st_ino)
    # The log grows by one small entry per write and the snapshot by one chunk, so it is rewritten now and
    # then, not on every write and not never.
    assert 1 < len(inodes) < 30
    assert state(Bm25sIndex(tmp_path)) == state(writer)


def test_a_torn_log_entry_is_ignored_and_cut_off_by_the_next_write(tmp_path: Path) -> None:
    first = Bm25sIndex(tmp_path)
    first.add("idx", [chunk(0), chunk(1), chunk(2)])
    first.add("idx", [chunk(3)])
    log = folder(tmp_path) / "corpus.log"
    whole = log.read_bytes()
    first.add("idx", [chunk(4)])
    torn = log.read_bytes()[: len(whole) + 20]  # a writer died 20 bytes into its entry
    log.write_bytes(torn)

    reader = Bm25sIndex(tmp_path)
    assert reader.count("idx") == 4
    assert ids(reader.search("idx", "word4", 5)) == []
    reader.add("idx", [chunk(5)])
    assert log.read_bytes()[: len(whole)] == whole
    after = Bm25sIndex(tmp_path)
    assert after.count("idx") == 5
    assert ids(after.search("idx", "word5", 5)) == ["c5"]
    assert ids(after.search("idx", "word3", 5)) == ["c3"]


def test_a_crash_between_a_snapshot_and_its_fresh_log_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_files, "SNAPSHOT_AFTER_LOG_BYTES", 0)
    writer = Bm25sIndex(tmp_path)
    writer.add("idx", [chunk(0)])
    snapshot, log = folder(tmp_path) / "corpus.npz", folder(tmp_path) / "corpus.log"
    written = 1
    while True:  # until a write replaces the snapshot
        inode, old_log = snapshot.stat().st_ino, log.read_bytes()
        writer.add("idx", [chunk(written)])
        written += 1
        if snapshot.stat().st_ino != inode:
            break
    assert written < 40
    # The process died before replacing the log: the old one (naming the old snapshot) is still there.
    log.write_bytes(old_log)

    reader = Bm25sIndex(tmp_path)
    assert reader.count("idx") == written
    reader.add("idx", [chunk(written)])  # appends to a log restarted for the new snapshot
    after = Bm25sIndex(tmp_path)
    assert after.count("idx") == written + 1
    assert [ids(after.search("idx", f"word{n}", 5)) for n in range(written + 1)] == [
        [f"c{n}"] for n in range(written + 1)
    ]


def test_an_index_written_before_the_log_existed_still_loads_and_takes_writes(tmp_path: Path) -> None:
    writer = Bm25sIndex(tmp_path)
    writer.add("idx", [chunk(0), chunk(1)])
    expected = state(writer)
    snapshot = folder(tmp_path) / "corpus.npz"
    with np.load(snapshot, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(arrays["meta"].tobytes())
    del meta["log"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    snapshot.write_bytes(buffer.getvalue())
    (folder(tmp_path) / "corpus.log").unlink()

    legacy = Bm25sIndex(tmp_path)
    assert state(legacy) == expected
    legacy.add("idx", [chunk(2)])
    assert ids(Bm25sIndex(tmp_path).search("idx", "word2", 5)) == ["c2"]


def test_a_first_snapshot_whose_log_was_never_written_still_takes_writes(tmp_path: Path) -> None:
    writer = Bm25sIndex(tmp_path)
    writer.add("idx", [chunk(0)])
    (folder(tmp_path) / "corpus.log").unlink()  # the process died between the snapshot and its log

    reader = Bm25sIndex(tmp_path)
    assert reader.count("idx") == 1
    reader.add("idx", [chunk(1)])
    after = Bm25sIndex(tmp_path)
    assert [ids(after.search("idx", f"word{n}", 5)) for n in range(2)] == [["c0"], ["c1"]]
