"""Qdrant Edge HNSW builds in a child process (retrieval.edge_build): copy, build, swap, replay, recover.

The maintenance thread is kept out of the way (hour-long intervals) and each test drives
``Shard.build_if_due`` itself. A gated child (``GATED_CHILD``) waits for a file before it execs the real
build, so a test knows the build is still running while it queries and writes: ordering, not timing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_edge import EdgeShard, Memory

from core.types import ChunkRecord, SearchFilter
from retrieval import edge_build, edge_shard
from retrieval.qdrant_edge import QdrantEdgeStore
from retrieval.qdrant_filters import PAYLOAD_FIELDS
from tests.edge_corpus import random_corpus, wait_until

N, DIM = 3000, 64
# Past Edge's indexing threshold (10 MB of vectors in a segment): optimize() builds HNSW for real.
INDEXED_N, INDEXED_DIM = 1800, 1536
GATED_CHILD = """
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
os.execv(sys.executable, [sys.executable, "-m", "retrieval.edge_build", *sys.argv[2:]])
"""


def corpus(n: int = N, seed: int = 0, prefix: str = "doc", dim: int = DIM) -> tuple[list[ChunkRecord], np.ndarray]:
    return random_corpus(n, dim, seed=seed, prefix=prefix)


def exact_top(recs: list[ChunkRecord], vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit @ (query / np.linalg.norm(query))
    return [recs[i].id for i in np.argsort(-cosines)[:k]]


def without(recs: list[ChunkRecord], vectors: np.ndarray, document_id: str) -> tuple[list[ChunkRecord], np.ndarray]:
    keep = [i for i, r in enumerate(recs) if r.payload["document_id"] != document_id]
    return [recs[i] for i in keep], vectors[keep]


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Create this file to let the child build."""
    path = tmp_path / "gate"
    monkeypatch.setattr(edge_build, "CHILD", [sys.executable, "-c", GATED_CHILD, str(path)])
    return path


def filled_store(root: Path, n: int = N, dim: int = DIM) -> QdrantEdgeStore:
    opened = QdrantEdgeStore(root, flush_interval_s=3600, optimize_idle_s=3600, optimize_max_delay_s=3600)
    opened.create("idx", dim)
    opened.bulk_upsert("idx", *corpus(n, dim=dim))
    return opened


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantEdgeStore]:
    opened = filled_store(tmp_path / "edge")
    yield opened
    opened.close()


def start_build(store: QdrantEdgeStore) -> edge_shard.Shard:
    shard = store._shards["idx"]
    shard.build_if_due(float("inf"), 3600, 3600)
    assert shard.build is not None
    return shard


def finish_build(shard: edge_shard.Shard, close_replaced: bool = True) -> None:
    """Waits for the child and swaps; then (``close_replaced``) closes the replaced shard, as the next round does."""
    assert shard.build is not None
    shard.build.process.wait(120)
    shard.build_if_due(float("inf"), 3600, 3600)  # the child is done: swaps
    assert shard.build is None
    if close_replaced:
        shard.close_replaced()


def store_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None]) -> QdrantEdgeStore:
    """The store the platform builds from its ``RAG_`` settings, with ``env`` set (None: unset)."""
    from core.config import Settings
    from retrieval.vector_store import make_vector_store

    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    store = make_vector_store(Settings(data_dir=tmp_path, qdrant_url=None))
    assert isinstance(store, QdrantEdgeStore)
    return store


def leftovers(root: Path) -> list[str]:
    """What the build folders (``.edge-*``, but for the aliases of open shards) hold."""
    folders = [p for p in root.glob(".edge-*") if p.name != edge_build.OPEN]
    return sorted(str(q.relative_to(root)) for p in folders for q in p.iterdir())


def test_writes_and_queries_go_on_during_the_build_and_survive_the_swap(gate: Path, tmp_path: Path) -> None:
    store = filled_store(tmp_path / "edge", INDEXED_N, INDEXED_DIM)
    recs, vectors = corpus(INDEXED_N, dim=INDEXED_DIM)
    shard = start_build(store)
    build = shard.build
    assert build is not None

    # The child waits at the gate: everything below happens while the build runs.
    hits = store.search("idx", vectors[7], 5)
    assert [h.id for h in hits] == exact_top(recs, vectors, vectors[7], 5)
    added, added_vectors = corpus(20, seed=1, prefix="new", dim=INDEXED_DIM)
    store.upsert("idx", added, added_vectors)
    store.delete_document("idx", "doc7")
    assert not build.finished()
    assert len(build.journal) == 2

    gate.touch()
    finish_build(shard)
    assert build.process.returncode == 0
    assert shard.shard.info().indexed_vectors_count >= INDEXED_N - INDEXED_N // 30  # HNSW built by the child
    assert store.optimized_since("idx") is None  # the replayed writes are not in HNSW yet

    kept_recs, kept_vectors = without(recs, vectors, "doc7")
    kept_recs, kept_vectors = kept_recs + added, np.vstack([kept_vectors, added_vectors])
    assert store.count("idx") == len(kept_recs)
    for query in (vectors[8], added_vectors[3]):
        assert [h.id for h in store.search("idx", query, 5)] == exact_top(kept_recs, kept_vectors, query, 5)
    assert store.search("idx", vectors[7], 5, SearchFilter(document_ids=("doc7",))) == []
    assert not build.folder.exists()
    assert leftovers(tmp_path / "edge") == []

    store.close()
    reopened = QdrantEdgeStore(tmp_path / "edge")
    assert reopened.count("idx") == len(kept_recs)
    assert leftovers(tmp_path / "edge") == []
    reopened.close()


def test_an_idle_shard_is_built_and_swapped_by_the_maintenance_thread(tmp_path: Path) -> None:
    recs, vectors = corpus(INDEXED_N, dim=INDEXED_DIM)
    store = QdrantEdgeStore(tmp_path / "edge", optimize_idle_s=0.2, optimize_max_delay_s=3600)
    store.create("idx", INDEXED_DIM)
    store.bulk_upsert("idx", recs, vectors)
    shard = store._shards["idx"]
    wait_until(lambda: store.optimized_since("idx") is not None, timeout_s=60)
    assert store.optimized_since("idx") is not None
    assert shard.build is None
    assert shard.last_build is not None and shard.last_build.process.returncode == 0
    assert store.count("idx") == INDEXED_N
    assert [h.id for h in store.search("idx", vectors[3], 5)] == exact_top(recs, vectors, vectors[3], 5)
    store.close()


def test_payload_indexes_are_memory_mapped_and_stay_so_through_a_child_build(tmp_path: Path) -> None:
    """A load maps memory-mapped payload indexes instead of rebuilding them in RAM while it holds the GIL (the
    swap); the HNSW segments a child writes keep them so, and filtered searches still use them."""
    recs, vectors = corpus(INDEXED_N, dim=INDEXED_DIM)
    store = filled_store(tmp_path / "edge", INDEXED_N, INDEXED_DIM)
    finish_build(start_build(store))
    store.close()
    shard = EdgeShard.load(str(tmp_path / "edge" / "idx"))
    try:
        info = shard.info()
        assert info.indexed_vectors_count == INDEXED_N
        placements = {field: index.params.memory for field, index in info.payload_schema.items()}
        assert placements == dict.fromkeys(PAYLOAD_FIELDS, Memory.Cold)
    finally:
        shard.close()
    reopened = QdrantEdgeStore(
        tmp_path / "edge", flush_interval_s=3600, optimize_idle_s=3600, optimize_max_delay_s=3600
    )
    wanted = recs[7].payload["document_id"]
    hits = reopened.search("idx", vectors[7], 5, SearchFilter(document_ids=(wanted,)))
    assert hits and {h.payload["document_id"] for h in hits} == {wanted}
    reopened.close()


def test_a_shard_below_the_indexing_threshold_is_optimized_without_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing there gets an HNSW graph, so starting a child would cost more than the optimize it runs."""
    monkeypatch.setattr(edge_build, "CHILD", [sys.executable, "-c", "import sys; sys.exit('no child expected')"])
    recs, vectors = corpus()
    store = QdrantEdgeStore(tmp_path / "edge", optimize_idle_s=0.2, optimize_max_delay_s=3600)
    store.create("idx", DIM)
    store.bulk_upsert("idx", recs, vectors)
    shard = store._shards["idx"]
    with shard.lock:
        assert shard.vector_bytes() < edge_shard.INDEXING_THRESHOLD_BYTES
    wait_until(lambda: store.optimized_since("idx") is not None, timeout_s=30)
    assert store.optimized_since("idx") is not None
    assert shard.build is None and shard.last_build is None
    assert [h.id for h in store.search("idx", vectors[3], 5)] == exact_top(recs, vectors, vectors[3], 5)
    store.close()


def test_a_reopened_shard_that_is_fully_indexed_is_not_built_again(tmp_path: Path) -> None:
    """Only points outside HNSW make an opened shard due: a copy and a child would otherwise rebuild nothing."""
    store = filled_store(tmp_path / "edge", INDEXED_N, INDEXED_DIM)
    store.optimize("idx")
    store.close()
    reopened = QdrantEdgeStore(tmp_path / "edge", optimize_idle_s=0.1, optimize_max_delay_s=3600)
    assert reopened.optimized_since("idx") is not None
    shard = reopened._shards["idx"]
    shard.build_if_due(float("inf"), 0, 3600, edge_shard.INDEXING_THRESHOLD_BYTES)
    assert shard.build is None and shard.last_build is None
    reopened.close()


def test_a_failing_child_keeps_the_live_shard(store: QdrantEdgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_build, "CHILD", [sys.executable, "-c", "import sys; sys.exit('out of memory')"])
    recs, vectors = corpus()
    shard = start_build(store)
    build = shard.build
    assert build is not None
    store.delete_document("idx", "doc1")
    build.process.wait(60)
    with pytest.raises(RuntimeError, match="out of memory"):
        shard.build_if_due(float("inf"), 3600, 3600)
    assert shard.build is None
    assert shard.retry_at > 0  # not before the max delay
    assert not build.folder.exists()
    assert store.count("idx") == N - N // 30
    kept, kept_vectors = without(recs, vectors, "doc1")
    assert [h.id for h in store.search("idx", vectors[2], 3)] == exact_top(kept, kept_vectors, vectors[2], 3)
    shard.build_if_due(time.monotonic(), 0, 3600)  # due, but it just failed
    assert shard.build is None
    shard.build_if_due(shard.retry_at, 0, 3600)  # retried once the max delay has passed
    assert shard.build is not None


class _FailingLoad:
    @staticmethod
    def load(path: str) -> None:
        raise RuntimeError("corrupt segment")


def test_a_failing_swap_restores_the_live_shard(
    store: QdrantEdgeStore, gate: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recs, vectors = corpus()
    shard = start_build(store)
    store.delete_document("idx", "doc2")
    gate.touch()
    assert shard.build is not None
    shard.build.process.wait(120)
    monkeypatch.setattr(edge_build, "EdgeShard", _FailingLoad)  # the built copy does not load
    with pytest.raises(RuntimeError, match="corrupt segment"):
        shard.build_if_due(float("inf"), 3600, 3600)
    assert shard.build is None
    assert not shard.closed
    assert store.count("idx") == N - N // 30
    kept, kept_vectors = without(recs, vectors, "doc2")
    assert [h.id for h in store.search("idx", vectors[3], 3)] == exact_top(kept, kept_vectors, vectors[3], 3)
    store.upsert("idx", *corpus(1, seed=2, prefix="after"))
    assert store.count("idx") == N - N // 30 + 1
    assert leftovers(tmp_path / "edge") == []


def test_the_replaced_shard_is_closed_and_deleted_a_round_later_without_the_lock(
    store: QdrantEdgeStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Closing a shard holds the GIL: not in the swap's stall, but the next maintenance round, apart from it."""
    deleted: list[tuple[Path, bool]] = []
    shard = start_build(store)

    def recorded(trashed: Path) -> None:
        deleted.append((trashed, shard.lock.locked()))
        delete(trashed)

    delete = edge_build.delete
    monkeypatch.setattr(edge_build, "delete", recorded)
    finish_build(shard, close_replaced=False)
    [(_, _, trashed, _)] = shard.replaced
    assert trashed.parent == tmp_path / "edge" / edge_build.TRASH and trashed.exists()
    assert store.count("idx") == N  # the swapped-in shard answers
    shard.build_if_due(float("inf"), 3600, 3600)  # the next round
    assert deleted == [(trashed, False)]
    assert not trashed.exists() and not shard.replaced
    assert store.count("idx") == N


def cached_bytes(folder: Path) -> int:
    """Bytes of ``folder``'s files in the page cache (util-linux ``fincore``)."""
    files = [str(p) for p in folder.rglob("*") if p.is_file()]
    command = ["fincore", "--bytes", "--noheadings", "--output", "RES", *files]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return sum(int(n) for n in out.stdout.split())


def test_closing_a_replaced_shard_leaves_the_page_cache_of_the_new_one_alone(
    store: QdrantEdgeStore, tmp_path: Path
) -> None:
    """What the swap relies on (``edge_build.swap``): an open shard whose folder was renamed still answers, and
    closing it changes no file, and drops from the page cache only its own files, not the new shard's at the path
    it was opened through: its alias was pointed at its new place."""
    shard = start_build(store)
    finish_build(shard, close_replaced=False)
    [(_, alias, trashed, _)] = shard.replaced
    assert alias.resolve() == trashed.resolve()
    assert shard.alias.resolve() == shard.path.resolve() and shard.alias.is_symlink()
    edge_build.warm(shard.path)
    cached = cached_bytes(shard.path)
    files = {p: p.read_bytes() for p in sorted(shard.path.rglob("*")) if p.is_file()}
    assert cached > 0
    shard.close_replaced()
    assert cached_bytes(shard.path) == cached
    assert {p: p.read_bytes() for p in sorted(shard.path.rglob("*")) if p.is_file()} == files
    assert not alias.exists() and not trashed.exists()
    assert store.count("idx") == N
    store.close()
    assert not any((tmp_path / "edge" / edge_build.OPEN).iterdir())  # no alias outlives its shard


def test_drop_close_and_optimize_stop_a_running_build(store: QdrantEdgeStore, gate: Path) -> None:
    shard = start_build(store)
    build = shard.build
    assert build is not None
    assert store.optimize("idx") in (True, False)  # in-process, now: the child is stopped
    assert shard.build is None
    assert build.process.returncode is not None
    assert not build.folder.exists()

    shard.unoptimized = True
    shard = start_build(store)
    build = shard.build
    assert build is not None
    store.drop("idx")
    assert build.process.returncode is not None
    assert not build.folder.exists()
    assert not store.exists("idx")


def test_leftovers_of_a_killed_swap_are_recovered_on_open(tmp_path: Path) -> None:
    """Killed after the live shard was moved aside: before the copy was moved in, and after it (no replay)."""
    root = tmp_path / "edge"
    recs, vectors = corpus()
    store = QdrantEdgeStore(root)
    store.create("early", DIM)
    store.create("late", DIM)
    store.upsert("early", recs, vectors)
    store.upsert("late", recs[:100], vectors[:100])
    store.close()
    stale = tmp_path / "stale-copy"
    shutil.copytree(root / "late", stale)  # the copy a build started from: 100 points
    store = QdrantEdgeStore(root)
    store.upsert("late", recs[100:], vectors[100:])  # the writes its journal held
    store.close()

    (root / ".edge-retired").mkdir()
    (root / ".edge-building").mkdir()
    shutil.copytree(root / "early", root / ".edge-building" / "early-0123")
    (root / "early").rename(root / ".edge-retired" / "early")  # killed before the copy was moved in
    (root / "late").rename(root / ".edge-retired" / "late")
    stale.rename(root / "late")  # killed after the copy was moved in, before the journal was replayed
    (root / ".edge-trash" / "late-0123").mkdir(parents=True)  # killed while deleting a retired shard
    (root / edge_build.OPEN).mkdir(exist_ok=True)  # left empty by the stores closed above
    (root / edge_build.OPEN / "early-0123").symlink_to("../early")  # the alias a dead process opened it through

    reopened = QdrantEdgeStore(root)
    assert leftovers(root) == []
    assert not (root / edge_build.OPEN).exists()  # nothing opened yet
    assert reopened.count("early") == N
    assert reopened.count("late") == N
    assert [h.id for h in reopened.search("late", vectors[5], 3)] == exact_top(recs, vectors, vectors[5], 3)
    reopened.close()


@pytest.mark.parametrize(("env", "expected"), [(None, True), ("false", False)])
def test_the_setting_reaches_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None, expected: bool
) -> None:
    store = store_from_settings(tmp_path, monkeypatch, {"RAG_EDGE_BUILD_IN_SUBPROCESS": env})
    assert store._build_in_subprocess is expected
    store.close()


def test_queries_go_on_and_writes_wait_while_the_folder_is_copied(
    store: QdrantEdgeStore, gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs, vectors = corpus()
    copied, release = threading.Event(), threading.Event()
    real_copy = edge_build.copy

    def paused_copy(live: Path) -> Path:
        folder = real_copy(live)
        copied.set()
        release.wait(60)
        return folder

    monkeypatch.setattr(edge_build, "copy", paused_copy)
    shard = store._shards["idx"]
    starter = threading.Thread(target=shard.build_if_due, args=(float("inf"), 3600, 3600))
    starter.start()
    assert copied.wait(60)
    # The copy is being taken: a query is answered, a write waits for the copy.
    assert [h.id for h in store.search("idx", vectors[4], 3)] == exact_top(recs, vectors, vectors[4], 3)
    writer = threading.Thread(target=store.delete_document, args=("idx", "doc4"))
    writer.start()
    writer.join(0.2)
    assert writer.is_alive()
    assert shard.build is None
    release.set()
    starter.join(60)
    writer.join(60)
    assert shard.build is not None
    assert len(shard.build.journal) == 1  # the write landed after the copy, so it is replayed on it
    gate.touch()
    finish_build(shard)
    assert store.count("idx") == N - N // 30
    kept, kept_vectors = without(recs, vectors, "doc4")
    assert [h.id for h in store.search("idx", vectors[5], 3)] == exact_top(kept, kept_vectors, vectors[5], 3)


def test_a_wider_hnsw_beam_finds_more_of_the_exact_top_ten(tmp_path: Path) -> None:
    """The beam (``RAG_EDGE_HNSW_EF_PER_MILLION`` per million points) reaches Edge's HNSW search: at the candidate
    count alone the graph misses neighbours of random high-dimensional vectors; a beam wider than half the shard
    finds them all, and a beam narrower than the limit is the limit."""
    store = filled_store(tmp_path / "edge", INDEXED_N, INDEXED_DIM)
    store.optimize("idx")
    store.close()
    recs, vectors = corpus(INDEXED_N, dim=INDEXED_DIM)
    queries = np.random.default_rng(5).standard_normal((20, INDEXED_DIM)).astype(np.float32)

    def recall(per_million: int) -> float:
        opened = QdrantEdgeStore(
            tmp_path / "edge", optimize_idle_s=3600, optimize_max_delay_s=3600, hnsw_ef_per_million=per_million
        )
        try:
            found = [{h.id for h in opened.search("idx", q, 10)} for q in queries]
        finally:
            opened.close()
        shares = [len(f & set(exact_top(recs, vectors, q, 10))) / 10 for f, q in zip(found, queries, strict=True)]
        return float(np.mean(shares))

    unset, narrow, wide = recall(0), recall(1000), recall(1000 * 1_000_000 // INDEXED_N)  # beams: 10, 10, 1000
    assert wide == 1.0
    assert narrow == unset < wide


def first_hit(store: QdrantEdgeStore, vector: np.ndarray, exact: bool = False) -> str:
    hits = store.search("idx", vector, 10, exact=exact)
    assert hits  # the indexed points answer whatever is skipped
    return hits[0].id


@pytest.mark.parametrize(("coverage", "skips"), [(None, True), ("1.01", False)])
def test_a_bulk_load_into_an_indexed_shard_is_vector_searchable_once_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, coverage: str | None, skips: bool
) -> None:
    """``RAG_EDGE_INDEXED_ONLY_MIN_COVERAGE`` (default 0.5): while HNSW covers that share of the shard, queries skip
    an unindexed segment past Edge's indexing threshold (the exact scan a query would pay for it). A first load and
    a small write are searched at once; exact search always sees everything."""
    env = {"RAG_EDGE_OPTIMIZE_IDLE_S": "3600", "RAG_EDGE_OPTIMIZE_MAX_DELAY_S": "3600"}
    store = store_from_settings(tmp_path, monkeypatch, {**env, "RAG_EDGE_INDEXED_ONLY_MIN_COVERAGE": coverage})
    recs, vectors = corpus(2 * INDEXED_N - 10, dim=INDEXED_DIM)  # the load and the small write: under half
    small, small_vectors = corpus(5, seed=1, prefix="small", dim=INDEXED_DIM)
    store.create("idx", INDEXED_DIM)
    store.bulk_upsert("idx", recs[:INDEXED_N], vectors[:INDEXED_N])
    assert first_hit(store, vectors[0]) == recs[0].id  # nothing indexed yet: scanned exactly
    assert store.awaiting_build("idx") == 0
    assert store.optimize("idx")
    store.bulk_upsert("idx", small, small_vectors)
    assert first_hit(store, small_vectors[0]) == small[0].id  # under the threshold: searched
    store.bulk_upsert("idx", recs[INDEXED_N:], vectors[INDEXED_N:])  # HNSW covers just over half the shard
    loaded = INDEXED_N + 7
    assert (first_hit(store, vectors[loaded]) == recs[loaded].id) is not skips
    assert first_hit(store, vectors[loaded], exact=True) == recs[loaded].id
    assert first_hit(store, vectors[3]) == recs[3].id
    assert store.awaiting_build("idx") == (len(recs) - INDEXED_N + len(small) if skips else 0)
    assert store.optimize("idx")
    assert first_hit(store, vectors[loaded]) == recs[loaded].id
    assert store.awaiting_build("idx") == 0
    store.close()


def test_the_built_copy_is_read_before_the_swap_and_writes_meanwhile_are_replayed(
    store: QdrantEdgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``edge_build.warm`` runs with the shard lock released: a write made then is journaled and in the swapped
    shard, and the warm read covered the built copy's files."""
    read: list[Path] = []
    added, added_vectors = corpus(5, seed=2, prefix="warm")
    warm = edge_build.warm

    def warm_and_write(folder: Path) -> None:
        read.extend(p for p in folder.rglob("*") if p.is_file())
        warm(folder)
        store.upsert("idx", added, added_vectors)

    monkeypatch.setattr(edge_build, "warm", warm_and_write)
    shard = start_build(store)
    finish_build(shard)
    assert any(p.name == "edge_config.json" for p in read)
    assert shard.last_build is not None and len(shard.last_build.journal) == 1
    recs, vectors = corpus()
    everything, all_vectors = recs + added, np.vstack([vectors, added_vectors])
    assert store.count("idx") == len(everything)
    assert [h.id for h in store.search("idx", added_vectors[2], 3)] == exact_top(
        everything, all_vectors, added_vectors[2], 3
    )
