"""The keyword corpus on disk (retrieval/keyword_corpus.py): SQLite in WAL mode, one transaction per write.

These tests check what a crash may leave: a writer process killed mid-write, a WAL whose last commit was
torn off half-written, and a writer that died without closing. Each reopen must show exactly the writes that
were committed, never lose or invent a chunk, and take writes again. Writers run in child processes, so the
reader in this process shares no memory or connection with them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
    print(min(start + batch, last), flush=True)  # chunks committed so far
os._exit(0)  # no close: the WAL is left as a crash leaves it
"""


def chunk(n: int) -> ChunkRecord:
    """Chunk ``n`` of document ``d<n // 3>``, with a word of its own so searches can find exactly it."""
    text = f"{WORDS[n % len(WORDS)]} word{n} shared text"
    return ChunkRecord(id=f"c{n}", text=text, payload={"document_id": f"d{n // 3}", "filename": f"f{n // 3}.txt"})


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def writer(root: Path, first: int, last: int, batch: int) -> subprocess.Popen[str]:
    script = f"WORDS = {WORDS!r}\n" + textwrap.dedent(WRITER)
    args = [sys.executable, "-c", script, str(root), str(first), str(last), str(batch)]
    return subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )


def write(root: Path, first: int, last: int, batch: int) -> None:
    process = writer(root, first, last, batch)
    process.communicate(timeout=120)
    assert process.returncode == 0


def holds_exactly(index: Bm25sIndex, n: int) -> None:
    """Chunks 0..n-1 and nothing else, each found by its own word."""
    assert index.count("idx") == n
    assert [ids(index.search("idx", f"word{k}", 5)) for k in range(n + 5)] == [[f"c{k}"] for k in range(n)] + [[]] * 5


def test_writes_of_a_process_that_died_without_closing_are_all_there(tmp_path: Path) -> None:
    write(tmp_path, 0, 20, 2)
    assert (tmp_path / "idx" / "corpus.sqlite-wal").stat().st_size > 0  # not checkpointed by a clean close
    reader = Bm25sIndex(tmp_path)
    holds_exactly(reader, 20)
    reader.delete_document("idx", "d1")
    reopened = Bm25sIndex(tmp_path)
    assert reopened.count("idx") == 17 and ids(reopened.search("idx", "word4", 5)) == []
    assert ids(reopened.search("idx", "word19", 5)) == ["c19"]


def test_a_reader_sees_another_process_write(tmp_path: Path) -> None:
    write(tmp_path, 0, 6, 3)
    reader = Bm25sIndex(tmp_path)
    holds_exactly(reader, 6)
    write(tmp_path, 6, 9, 3)
    holds_exactly(reader, 9)  # the same reader, no reopen


def test_a_writer_killed_mid_write_leaves_whole_writes_only(tmp_path: Path) -> None:
    write(tmp_path, 0, 30, 30)  # a corpus to write on top of
    process = writer(tmp_path, 30, 30_000, 30)
    assert process.stdout is not None
    committed = 30
    while committed < 300:  # let it commit a few writes, then kill it wherever it is
        committed = int(process.stdout.readline())
    time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    reader = Bm25sIndex(tmp_path)
    n = reader.count("idx")
    assert n >= committed and n % 30 == 0  # every reported write, and no half write
    holds_exactly(reader, n)
    reader.add("idx", [chunk(n)])
    holds_exactly(Bm25sIndex(tmp_path), n + 1)


def test_a_torn_last_commit_in_the_wal_is_ignored_and_the_next_write_goes_on(tmp_path: Path) -> None:
    write(tmp_path, 0, 12, 3)
    wal = tmp_path / "idx" / "corpus.sqlite-wal"
    whole = wal.stat().st_size
    write(tmp_path, 12, 15, 3)
    assert wal.stat().st_size > whole  # the last write's frames follow the others
    with open(wal, "r+b") as f:  # the writer died halfway through writing its last commit's frames
        f.truncate(whole + (wal.stat().st_size - whole) // 2)
    (tmp_path / "idx" / "corpus.sqlite-shm").unlink()  # as after a reboot: rebuilt from the WAL on open

    reader = Bm25sIndex(tmp_path)
    holds_exactly(reader, 12)
    reader.add("idx", [chunk(12)])
    holds_exactly(Bm25sIndex(tmp_path), 13)
