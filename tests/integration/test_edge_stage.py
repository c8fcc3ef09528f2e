"""Upserts that searches would skip until their build are staged on disk for the build's child
(retrieval.edge_stage): not written into the live shard, counted as awaiting their build, applied in order
(deletes included) by the child or by ``optimize``, kept across a restart, dropped with their index.

The maintenance thread is kept out of the way (hour-long intervals); builds are driven as in test_edge_build.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_edge import CountRequest

from core.types import ChunkRecord
from retrieval import edge_build, edge_stage
from retrieval.qdrant_edge import QdrantEdgeStore
from tests.edge_corpus import random_corpus
from tests.integration.test_edge_build import INDEXED_DIM, INDEXED_N, finish_build, start_build

# HNSW keeps COVERAGE of the shard with LOAD (and a few hundred more) added; the first 1,536 points of the load
# (6 batches) stay under Edge's indexing threshold and go live, the rest is staged.
COVERAGE = 0.3
LOAD = 2400
BATCH = 256


def open_store(root: Path) -> QdrantEdgeStore:
    return QdrantEdgeStore(
        root, flush_interval_s=3600, optimize_idle_s=3600, optimize_max_delay_s=3600, indexed_only_min_coverage=COVERAGE
    )


@pytest.fixture
def indexed(tmp_path: Path) -> Iterator[QdrantEdgeStore]:
    """An HNSW-indexed shard past Edge's indexing threshold."""
    store = open_store(tmp_path / "edge")
    store.create("idx", INDEXED_DIM)
    store.bulk_upsert("idx", *random_corpus(INDEXED_N, INDEXED_DIM, prefix="base"))
    assert store.optimize("idx")
    yield store
    store.close()


def load(store: QdrantEdgeStore) -> tuple[list[ChunkRecord], np.ndarray]:
    recs, vectors = random_corpus(LOAD, INDEXED_DIM, seed=1, prefix="load", documents=7)
    for start in range(0, LOAD, BATCH):
        store.upsert("idx", recs[start : start + BATCH], vectors[start : start + BATCH])
    return recs, vectors


def live_count(store: QdrantEdgeStore) -> int:
    return int(store._shards["idx"].shard.count(CountRequest(exact=True)))


def found(store: QdrantEdgeStore, vector: np.ndarray, exact: bool = False) -> str:
    return store.search("idx", vector, 1, exact=exact)[0].id


def test_a_bulk_load_past_the_threshold_is_staged_and_built_by_the_child(indexed: QdrantEdgeStore) -> None:
    recs, vectors = load(indexed)
    stage = indexed._shards["idx"].stage
    live = live_count(indexed) - INDEXED_N
    assert 0 < live < LOAD  # the first batches under the threshold went live: searched at once
    assert stage.points == LOAD - live and len(stage.files) == stage.points // BATCH + (stage.points % BATCH > 0)
    assert found(indexed, vectors[0]) == recs[0].id
    assert found(indexed, vectors[-1], exact=True) != recs[-1].id  # not in the live shard at all
    assert indexed.awaiting_build("idx") == stage.points
    assert indexed.count("idx") == INDEXED_N + LOAD
    assert indexed.optimized_since("idx") is None  # a build is due

    finish_build(start_build(indexed))
    assert found(indexed, vectors[-1]) == recs[-1].id
    assert indexed.awaiting_build("idx") == 0 and not stage and not any(stage.folder.iterdir())
    assert live_count(indexed) == indexed.count("idx") == INDEXED_N + LOAD


def test_staged_writes_after_the_copy_wait_for_the_next_build(indexed: QdrantEdgeStore) -> None:
    """The child applies the files staged when its build started; later ones stay staged, in order: chunks of the
    load written again (new vectors, same ids), then one of its documents deleted, everywhere."""
    recs, vectors = load(indexed)
    shard = start_build(indexed)
    again = LOAD - 300
    rewritten = np.random.default_rng(2).standard_normal((300, INDEXED_DIM)).astype(np.float32)
    indexed.upsert("idx", recs[again:], rewritten)
    indexed.delete_document("idx", "load3")
    finish_build(shard)
    stage = shard.stage
    assert stage.points == 300 and len(stage.files) == 2  # the rewrite and the delete after it
    assert found(indexed, vectors[again - 1]) == recs[again - 1].id
    assert indexed.awaiting_build("idx") == 300

    finish_build(start_build(indexed))
    assert not stage
    kept = [i for i, r in enumerate(recs) if r.payload["document_id"] != "load3"]
    assert live_count(indexed) == INDEXED_N + len(kept)
    last_kept = kept[-1]
    assert found(indexed, rewritten[last_kept - again]) == recs[last_kept].id
    gone = max(i for i, r in enumerate(recs) if r.payload["document_id"] == "load3")  # staged, then rewritten
    assert found(indexed, rewritten[gone - again], exact=True) != recs[gone].id
    assert found(indexed, vectors[gone], exact=True) != recs[gone].id


def test_a_delete_during_a_build_is_not_left_staged_after_its_swap(indexed: QdrantEdgeStore) -> None:
    """Journaled and replayed by the swap, with no staged upsert before it: nothing is left for a next build."""
    load(indexed)
    shard = start_build(indexed)
    indexed.delete_document("idx", "load2")
    finish_build(shard)
    assert not shard.stage and not any(shard.stage.folder.iterdir())
    assert live_count(indexed) == INDEXED_N + LOAD - len(range(2, LOAD, 7))


def test_staged_writes_outlive_a_failed_build_and_a_restart(
    indexed: QdrantEdgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs, vectors = load(indexed)
    staged = indexed._shards["idx"].stage.points
    with monkeypatch.context() as failing:
        failing.setattr(edge_build, "CHILD", [sys.executable, "-c", "import sys; sys.exit('out of memory')"])
        shard = start_build(indexed)
        shard.build.process.wait(60)  # type: ignore[union-attr]
        with pytest.raises(RuntimeError, match="out of memory"):
            shard.build_if_due(float("inf"), 3600, 3600)
    assert shard.stage.points == staged
    (shard.stage.folder / "unfinished.tmp").write_bytes(b"a write that died before its rename")
    indexed.close()

    reopened = open_store(tmp_path / "edge")
    try:
        assert reopened.awaiting_build("idx") == staged
        assert reopened.optimized_since("idx") is None
        assert not list(reopened._shards["idx"].stage.folder.glob("*.tmp"))
        finish_build(start_build(reopened))
        assert found(reopened, vectors[-1]) == recs[-1].id
        assert reopened.count("idx") == INDEXED_N + LOAD
    finally:
        reopened.close()


def test_optimize_and_a_bulk_upsert_apply_the_stage_first(indexed: QdrantEdgeStore) -> None:
    recs, vectors = load(indexed)
    assert indexed.optimize("idx")
    assert not indexed._shards["idx"].stage and indexed.awaiting_build("idx") == 0
    assert found(indexed, vectors[-1]) == recs[-1].id
    again, again_vectors = random_corpus(LOAD, INDEXED_DIM, seed=4, prefix="again", documents=7)
    for start in range(0, LOAD, BATCH):
        indexed.upsert("idx", again[start : start + BATCH], again_vectors[start : start + BATCH])
    assert indexed._shards["idx"].stage
    more, more_vectors = random_corpus(5, INDEXED_DIM, seed=3, prefix="bulk")
    indexed.bulk_upsert("idx", more, more_vectors)
    assert not indexed._shards["idx"].stage
    assert live_count(indexed) == INDEXED_N + 2 * LOAD + len(more)
    assert found(indexed, again_vectors[-1], exact=True) == again[-1].id


def test_a_load_that_would_take_hnsw_below_its_share_is_written_live(indexed: QdrantEdgeStore) -> None:
    """Past the coverage share searches scan the unindexed points exactly again: the stage is applied and the
    rest of the load goes to the live shard, where it is searchable at once."""
    recs, vectors = random_corpus(int(INDEXED_N / COVERAGE) - INDEXED_N + 400, INDEXED_DIM, seed=5, prefix="big")
    for start in range(0, len(recs), BATCH):
        indexed.upsert("idx", recs[start : start + BATCH], vectors[start : start + BATCH])
    assert not indexed._shards["idx"].stage
    assert live_count(indexed) == INDEXED_N + len(recs)
    assert found(indexed, vectors[-1]) == recs[-1].id
    assert indexed.awaiting_build("idx") == 0


def test_dropping_an_index_drops_its_stage(indexed: QdrantEdgeStore) -> None:
    load(indexed)
    folder = indexed._shards["idx"].stage.folder
    assert any(folder.iterdir())
    indexed.drop("idx")
    assert not folder.exists()
    assert not any((folder.parent.parent / edge_build.OPEN).iterdir())  # its alias too
    indexed.create("idx", INDEXED_DIM)
    assert indexed.count("idx") == 0 and indexed.awaiting_build("idx") == 0


def test_the_stage_keeps_order_and_skips_unfinished_files(tmp_path: Path) -> None:
    folder = tmp_path / "stage"
    stage = edge_stage.Stage(folder)
    recs, vectors = random_corpus(4, 8)
    stage.upsert(edge_stage.prepare_upsert(folder, [r.id for r in recs], vectors, [r.payload for r in recs]), 4)
    stage.delete_document("doc1")
    stage.upsert(edge_stage.prepare_upsert(folder, [recs[0].id], vectors[:1], [{"document_id": "doc1"}]), 1)
    (folder / "x.tmp").write_bytes(b"")
    reread = edge_stage.Stage(folder)
    assert reread.files == stage.files and reread.points == 5
    assert edge_stage.through(stage.files[1]) == stage.files[:2]
    assert not (folder / "x.tmp").exists()
    reread.consumed(reread.files[:2])
    assert reread.points == 1 and [p.name for p in folder.iterdir()] == [stage.files[2].name]
