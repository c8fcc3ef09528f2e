"""The keyword corpus on disk: a snapshot plus an append-only log of changes (retrieval/keyword_corpus.py).

A write appends its change instead of rewriting the whole index; these tests check that appends really
leave the snapshot alone, that the snapshot is rewritten once the log outgrows it, and that a torn log
entry or a crash between a snapshot and its fresh log never loses or invents a chunk. A second
``Bm25sIndex`` on the same folder stands in for another process (separate memory); the crash cases at the
end run the writer in a real child process and kill it mid-write.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import retrieval.keyword_corpus as keyword_files
from core.types import ChunkRecord, Hit
from retrieval.bm25s_index import Bm25sIndex

REPO = Path(__file__).resolve().parents[2]
WORDS = ["marrow", "neutron", "yeast", "budget", "flour", "orbit", "membrane", "broth"]
WRITER = """
import os, sys
from core.types import ChunkRecord
from retrieval.bm25s_index import Bm25sIndex

def chunk(n):
    text = f"{WORDS[n % len(WORDS)]} word{n} shared text"
    return ChunkRecord(id=f"c{n}", text=text, payload={"document_id": f"d{n // 3}", "filename": f"f{n // 3}.txt"})

index = Bm25sIndex(sys.argv[1])
first, last, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for start in range(first, last, batch):
    index.add("idx", [chunk(n) for n in range(start, min(start + batch, last))])
    print(min(start + batch, last), flush=True)  # chunks written so far
os._exit(0)  # no close, as a crash leaves it
"""


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


def writer(root: Path, first: int, last: int, batch: int, snapshot_after: int | None = None) -> subprocess.Popen[str]:
    """A child process adding chunks ``first..last-1`` in writes of ``batch``, printing each one done."""
    script = f"WORDS = {WORDS!r}\n"
    if snapshot_after is not None:
        script += f"import retrieval.keyword_corpus as kc; kc.SNAPSHOT_AFTER_LOG_BYTES = {snapshot_after}\n"
    script += textwrap.dedent(WRITER)
    args = [sys.executable, "-c", script, str(root), str(first), str(last), str(batch)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)


def holds_exactly(index: Bm25sIndex, n: int) -> None:
    """Chunks 0..n-1 and nothing else, each found by its own word."""
    assert index.count("idx") == n
    assert [ids(index.search("idx", f"word{k}", 5)) for k in range(n + 5)] == [[f"c{k}"] for k in range(n)] + [[]] * 5


def test_a_reader_sees_the_writes_of_a_process_that_died_without_closing(tmp_path: Path) -> None:
    process = writer(tmp_path, 0, 12, 3)
    process.communicate(timeout=120)
    assert process.returncode == 0
    reader = Bm25sIndex(tmp_path)
    holds_exactly(reader, 12)
    process = writer(tmp_path, 12, 15, 3)
    process.communicate(timeout=120)
    holds_exactly(reader, 15)  # the same reader, no reopen


@pytest.mark.parametrize("snapshot_after", [None, 0], ids=["appending", "snapshotting"])
def test_a_writer_killed_mid_write_leaves_whole_writes_only(tmp_path: Path, snapshot_after: int | None) -> None:
    """Killed wherever it is: appending to the log, or (``snapshot_after`` 0) rewriting the snapshot too."""
    process = writer(tmp_path, 0, 30_000, 30, snapshot_after)
    assert process.stdout is not None
    written = 0
    while written < 300:  # let it finish a few writes, then kill it wherever it is
        written = int(process.stdout.readline())
    time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    reader = Bm25sIndex(tmp_path)
    n = reader.count("idx")
    assert n >= written and n % 30 == 0  # every write that returned, and no half write
    holds_exactly(reader, n)
    reader.add("idx", [chunk(n)])
    holds_exactly(Bm25sIndex(tmp_path), n + 1)
