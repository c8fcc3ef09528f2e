"""One contract for every VectorStore: Qdrant Edge, and qdrant-client (in-memory and on-disk local mode).

No Qdrant server runs on the test machines, so ``QdrantServerStore`` is exercised through
qdrant-client's local mode, which implements the same API in-process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from core.errors import BadInput, Conflict, NotFound
from core.ids import chunk_id
from core.types import ChunkRecord, SearchFilter
from retrieval import edge_shard
from retrieval.qdrant_edge import QdrantEdgeStore
from retrieval.qdrant_server import QdrantServerStore
from retrieval.vector_store import VectorStore
from tests.edge_corpus import random_corpus, wait_until

DIM = 4
QUERY = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
# name -> (vector, payload); cosines to QUERY are 1.0, 0.8, 0.5, 0.0, -0.6. Vectors are not
# normalized on purpose: the store must rank by cosine, not by dot product.
DOC1 = {"document_id": "doc1", "filename": "one.pdf", "uploaded_at": 1000.0}
DOC2 = {"document_id": "doc2", "filename": "two.md", "uploaded_at": 2000.0}
DOC3 = {"document_id": "doc3", "filename": "three.txt"}
POINTS: dict[str, tuple[list[float], dict]] = {
    "a": ([2.0, 0.0, 0.0, 0.0], {**DOC1, "tags": ["x"]}),
    "b": ([4.0, 3.0, 0.0, 0.0], {**DOC1, "tags": ["x", "y"]}),
    "c": ([0.5, 0.0, 0.8660254, 0.0], {**DOC2, "tags": ["y"]}),
    "d": ([0.0, 0.0, 0.0, 3.0], {**DOC3, "tags": [], "uploaded_at": 3000.0}),
    "e": ([-0.6, 0.0, 0.0, 0.8], {**DOC3, "tags": ["z"]}),  # no upload time: range filters exclude it
}
ORDER = ["a", "b", "c", "d", "e"]
COSINES = [1.0, 0.8, 0.5, 0.0, -0.6]
IDS = {name: chunk_id(payload["document_id"], i) for i, (name, (_, payload)) in enumerate(POINTS.items())}
NAMES = {point_id: name for name, point_id in IDS.items()}


def records(names: list[str] | None = None) -> tuple[list[ChunkRecord], np.ndarray]:
    names = names or list(POINTS)
    recs = [ChunkRecord(id=IDS[n], text=f"text of {n}", payload=dict(POINTS[n][1])) for n in names]
    return recs, np.array([POINTS[n][0] for n in names], dtype=np.float32)


StoreFactory = Callable[[], VectorStore]


@pytest.fixture(params=["edge", "client-memory", "client-path"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_store(kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the store at one fixed location; calling it again after close() reopens it there."""
    opened: list[VectorStore] = []
    memory_client = QdrantClient(location=":memory:") if kind == "client-memory" else None

    def factory() -> VectorStore:
        if kind == "edge":
            store: VectorStore = QdrantEdgeStore(tmp_path / "edge")
        elif kind == "client-path":
            store = QdrantServerStore(client=QdrantClient(path=str(tmp_path / "local")))
        else:
            store = QdrantServerStore(client=memory_client)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> VectorStore:
    s = open_store()
    s.create("idx", DIM)
    recs, vecs = records()
    s.upsert("idx", recs, vecs)
    return s


def names_of(hits: list) -> list[str]:
    return [NAMES[h.id] for h in hits]


def test_create_is_idempotent(open_store: StoreFactory) -> None:
    s = open_store()
    assert not s.exists("fresh")
    s.create("fresh", DIM)
    s.create("fresh", DIM)
    assert s.exists("fresh")
    assert s.count("fresh") == 0
    with pytest.raises(Conflict):
        s.create("fresh", DIM + 1)


def test_upsert_is_idempotent_by_id(store: VectorStore) -> None:
    assert store.count("idx") == 5
    recs, vecs = records()
    store.upsert("idx", recs, vecs)
    assert store.count("idx") == 5
    changed = ChunkRecord(id=IDS["a"], text="new text", payload={**POINTS["a"][1], "tags": ["new"]})
    store.upsert("idx", [changed], vecs[:1])
    assert store.count("idx") == 5
    top = store.search("idx", QUERY, 1)[0]
    assert top.id == IDS["a"]
    assert top.payload["text"] == "new text"
    assert top.payload["tags"] == ["new"]


def test_search_orders_by_cosine_and_returns_payloads(store: VectorStore) -> None:
    hits = store.search("idx", QUERY, 10)
    assert names_of(hits) == ORDER
    assert [h.score for h in hits] == pytest.approx(COSINES, abs=1e-5)
    assert hits[0].payload["text"] == "text of a"
    assert hits[0].payload["document_id"] == "doc1"
    assert hits[0].payload["filename"] == "one.pdf"
    assert names_of(store.search("idx", QUERY, 2)) == ["a", "b"]
    assert store.search("idx", QUERY, 0) == []


def test_a_search_for_ranking_returns_document_ids_and_payloads_are_read_by_id(store: VectorStore) -> None:
    light = store.search("idx", QUERY, 10, SearchFilter(tags=("x", "z")), full_payload=False)
    assert names_of(light) == ["a", "b", "e"]
    assert [h.payload for h in light] == [{"document_id": "doc1"}, {"document_id": "doc1"}, {"document_id": "doc3"}]
    full = {h.id: h.payload for h in store.search("idx", QUERY, 10)}
    wanted = [IDS["e"], IDS["a"], chunk_id("no-such-document", 0)]
    assert store.payloads("idx", wanted) == {IDS["e"]: full[IDS["e"]], IDS["a"]: full[IDS["a"]]}
    assert full[IDS["a"]]["text"] == "text of a"
    assert store.payloads("idx", []) == {}
    assert store.payloads("no-such-index", [IDS["a"]]) == {}


AFTER_1500 = datetime.fromtimestamp(1500, tz=UTC)
BEFORE_2500 = datetime.fromtimestamp(2500, tz=UTC)
FILTERS = {
    "document_ids": SearchFilter(document_ids=("doc1", "doc3")),
    "filenames": SearchFilter(filenames=("two.md",)),
    "tags_any_of": SearchFilter(tags=("y", "z")),
    "uploaded_after": SearchFilter(uploaded_after=AFTER_1500),
    "uploaded_before": SearchFilter(uploaded_before=BEFORE_2500),
    "uploaded_between": SearchFilter(uploaded_after=AFTER_1500, uploaded_before=BEFORE_2500),
    "inclusive_bounds": SearchFilter(uploaded_after=datetime.fromtimestamp(1000, tz=UTC)),
    "combined": SearchFilter(document_ids=("doc1", "doc2"), tags=("y",)),
    "matches_nothing": SearchFilter(document_ids=("missing",)),
    "empty": SearchFilter(),
}


@pytest.mark.parametrize("flt", FILTERS.values(), ids=FILTERS.keys())
def test_filters_agree_with_the_reference_semantics(store: VectorStore, flt: SearchFilter) -> None:
    expected = [name for name in ORDER if flt.matches(POINTS[name][1])]
    assert names_of(store.search("idx", QUERY, 10, flt)) == expected


def test_filter_is_applied_inside_the_search(store: VectorStore) -> None:
    # With limit 1, a post-filter would keep "a" and then drop it, returning nothing.
    assert names_of(store.search("idx", QUERY, 1, SearchFilter(document_ids=("doc3",)))) == ["d"]


def test_written_points_are_searchable_at_once(store: VectorStore) -> None:
    assert store.awaiting_build("idx") == 0
    assert store.awaiting_build("missing") == 0


def test_delete_document(store: VectorStore) -> None:
    store.delete_document("idx", "doc1")
    assert store.count("idx") == 3
    assert names_of(store.search("idx", QUERY, 10)) == ["c", "d", "e"]
    store.delete_document("idx", "no-such-document")
    store.delete_document("no-such-index", "doc1")
    assert store.count("idx") == 3


def test_drop(store: VectorStore) -> None:
    store.drop("idx")
    assert not store.exists("idx")
    assert store.count("idx") == 0
    assert store.search("idx", QUERY, 10) == []
    store.drop("idx")
    store.create("idx", DIM)
    assert store.count("idx") == 0


def test_missing_index(open_store: StoreFactory) -> None:
    s = open_store()
    assert s.search("nothing", QUERY, 5) == []
    assert s.count("nothing") == 0
    recs, vecs = records(["a"])
    with pytest.raises(NotFound):
        s.upsert("nothing", recs, vecs)


def test_bad_input(store: VectorStore) -> None:
    recs, vecs = records(["a", "b"])
    with pytest.raises(BadInput):
        store.upsert("idx", recs, vecs[:1])
    with pytest.raises(BadInput):
        store.create("../escape", DIM)


def test_indexes_are_isolated(store: VectorStore) -> None:
    store.create("other", DIM)
    recs, vecs = records(["c"])
    store.upsert("other", recs, vecs)
    assert names_of(store.search("other", QUERY, 10)) == ["c"]
    assert store.count("idx") == 5
    store.delete_document("other", "doc1")
    store.drop("other")
    assert names_of(store.search("idx", QUERY, 10)) == ORDER


def test_survives_close_and_reopen(kind: str, open_store: StoreFactory) -> None:
    if kind == "client-memory":
        pytest.skip("in-memory local mode keeps nothing by design")
    s = open_store()
    s.create("idx", DIM)
    recs, vecs = records()
    s.upsert("idx", recs, vecs)
    s.delete_document("idx", "doc2")
    s.close()
    reopened = open_store()
    assert reopened.exists("idx")
    assert reopened.count("idx") == 4
    assert names_of(reopened.search("idx", QUERY, 10, SearchFilter(tags=("x",)))) == ["a", "b"]
    reopened.create("idx", DIM)
    assert reopened.count("idx") == 4


def test_edge_bulk_upsert_then_optimize(tmp_path: Path) -> None:
    """The re-index path: many points written without optimizing, one optimize() at the end."""
    n, dim = 3000, 64
    recs, vectors = random_corpus(n, dim, seed=0, documents=30)
    s = QdrantEdgeStore(tmp_path)
    s.create("big", dim)
    for start in range(0, n, 1000):
        s.bulk_upsert("big", recs[start : start + 1000], vectors[start : start + 1000])
    s.optimize("big")
    assert s.count("big") == n
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    allowed = ("doc7", "doc8")
    cosines = unit @ (vectors[7] / np.linalg.norm(vectors[7]))
    exact = [recs[i].id for i in np.argsort(-cosines) if recs[i].payload["document_id"] in allowed][:5]
    hits = s.search("big", vectors[7], 5, SearchFilter(document_ids=allowed))
    assert [h.id for h in hits] == exact
    s.close()


EDGE_WRITER = """
import os, sys
import numpy as np
from core.types import ChunkRecord
from retrieval.qdrant_edge import QdrantEdgeStore

store = QdrantEdgeStore(sys.argv[1], flush_interval_s=3600)
store.create("idx", 4)
store.upsert("idx", [ChunkRecord(id=f"00000000-0000-0000-0000-00000000000{i}", text="t", payload={})
                     for i in range(3)], np.eye(3, 4, dtype=np.float32))
store.delete_document("idx", "none")
os._exit(0)  # dies like a killed worker: no close(), no flush
"""


def test_edge_writes_survive_the_process_dying_before_a_flush(tmp_path: Path) -> None:
    """Why flushing only every few seconds loses nothing when the process dies: Edge's write-ahead log."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", EDGE_WRITER, str(tmp_path / "edge")], cwd=root, check=True)
    reopened = QdrantEdgeStore(tmp_path / "edge")
    assert reopened.count("idx") == 3
    reopened.close()


def test_edge_flushes_dirty_shards_in_the_background(tmp_path: Path) -> None:
    recs, vectors = records()
    store = QdrantEdgeStore(tmp_path / "edge", flush_interval_s=0.5)
    store.create("idx", DIM)
    store.upsert("idx", recs, vectors)
    shard = store._shards["idx"]
    assert shard.dirty  # the write did not flush
    wait_until(lambda: not shard.dirty)
    assert not shard.dirty
    store.close()


def test_edge_intervals_zero_flush_and_optimize_every_write_without_a_thread(tmp_path: Path) -> None:
    recs, vectors = records()
    store = QdrantEdgeStore(tmp_path / "edge", flush_interval_s=0, optimize_idle_s=0)
    store.create("idx", DIM)
    store.upsert("idx", recs, vectors)
    shard = store._shards["idx"]
    assert not shard.dirty
    assert not shard.unoptimized
    assert store._maintainer is None
    store.close()


def test_edge_optimizes_in_the_background_once_writes_pause(tmp_path: Path) -> None:
    """Ingest never waits on an HNSW build: the upsert returns searchable, the build follows a pause."""
    recs, vectors = records()
    store = QdrantEdgeStore(tmp_path / "edge", optimize_idle_s=0.3, optimize_max_delay_s=3600)
    store.create("idx", DIM)
    store.upsert("idx", recs, vectors)
    shard = store._shards["idx"]
    assert shard.unoptimized  # the write did not optimize
    assert store.optimized_since("idx") is None
    assert names_of(store.search("idx", QUERY, 10)) == ORDER  # searchable already
    written = shard.written_at
    wait_until(lambda: not shard.unoptimized)
    assert not shard.unoptimized
    assert store.optimized_since("idx") == shard.optimized_at
    assert shard.optimized_at - written >= 0.3
    assert names_of(store.search("idx", QUERY, 10)) == ORDER
    store.close()


@pytest.mark.parametrize("in_subprocess", [True, False])
def test_edge_optimizes_under_a_steady_stream_of_writes_after_the_max_delay(
    tmp_path: Path, in_subprocess: bool
) -> None:
    """A build in a child process ends with the writes made meanwhile replayed, not indexed: still unoptimized."""
    recs, vectors = records()
    store = QdrantEdgeStore(
        tmp_path / "edge", optimize_idle_s=3600, optimize_max_delay_s=0.5, build_in_subprocess=in_subprocess
    )
    store.create("idx", DIM)
    shard = store._shards["idx"]
    started = shard.optimized_at
    for _ in range(200):  # a write every 50 ms: never idle for an hour
        store.upsert("idx", recs, vectors)
        threading.Event().wait(0.05)
        if shard.optimized_at != started:
            break
    assert shard.optimized_at - started >= 0.5
    assert names_of(store.search("idx", QUERY, 10)) == ORDER
    store.close()


def test_edge_does_not_retry_a_failed_build_before_the_max_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs, vectors = records()
    store = QdrantEdgeStore(tmp_path / "edge", optimize_idle_s=3600, optimize_max_delay_s=3600)
    store.create("idx", DIM)
    store.upsert("idx", recs, vectors)
    shard = store._shards["idx"]
    attempts: list[float] = []

    def failing(opened: edge_shard.Shard) -> bool:
        attempts.append(time.monotonic())
        raise RuntimeError("out of memory")

    monkeypatch.setattr(edge_shard.Shard, "optimize", failing)
    with pytest.raises(RuntimeError):
        shard.optimize_if_due(time.monotonic() + 2, idle_s=1, max_delay_s=3600)  # idle long enough: due
    shard.optimize_if_due(time.monotonic() + 2, idle_s=1, max_delay_s=3600)  # due, but it just failed
    assert len(attempts) == 1
    with pytest.raises(RuntimeError):  # retried once the max delay has passed
        shard.optimize_if_due(shard.retry_at, idle_s=1, max_delay_s=3600)
    assert len(attempts) == 2
    store.close()


def test_edge_optimizes_a_reopened_shard_its_last_process_left_unindexed(tmp_path: Path) -> None:
    recs, vectors = records()
    first = QdrantEdgeStore(tmp_path / "edge", optimize_idle_s=3600)
    first.create("idx", DIM)
    first.upsert("idx", recs, vectors)
    first.close()
    reopened = QdrantEdgeStore(tmp_path / "edge", optimize_idle_s=0.1)
    assert reopened.count("idx") == len(recs)  # opens the shard: no write follows
    shard = reopened._shards["idx"]
    wait_until(lambda: not shard.unoptimized)
    assert not shard.unoptimized
    reopened.close()


def test_edge_maintenance_skips_dropped_shards_and_survives_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs, vectors = records()
    store = QdrantEdgeStore(
        tmp_path / "edge",
        flush_interval_s=0.05,
        optimize_idle_s=0.05,
        optimize_max_delay_s=0.2,
        build_in_subprocess=False,  # the failure is injected in-process
    )
    store.create("gone", DIM)
    store.upsert("gone", recs, vectors)
    gone = store._shards["gone"]
    store.drop("gone")
    gone.dirty = True
    gone.flush_if_dirty()  # what the maintenance thread does with a shard it listed before the drop: nothing
    gone.optimize_if_due(float("inf"), 0, 1)
    with pytest.raises(NotFound):
        store.upsert("gone", recs, vectors)

    real = edge_shard.Shard.flush_if_dirty
    failures: list[str] = []

    def fail_once(shard: edge_shard.Shard) -> None:
        if not failures:
            failures.append("raised")
            raise RuntimeError("disk full")
        real(shard)

    real_optimize = edge_shard.Shard.optimize
    optimize_failures: list[str] = []

    class Panic(BaseException):
        """What a Rust panic reaches Python as (pyo3's PanicException is no ``Exception``)."""

    def fail_optimize_once(shard: edge_shard.Shard) -> bool:
        if not optimize_failures:
            optimize_failures.append("raised")
            raise Panic("called `Option::unwrap()` on a `None` value")
        return real_optimize(shard)

    monkeypatch.setattr(edge_shard.Shard, "flush_if_dirty", fail_once)
    monkeypatch.setattr(edge_shard.Shard, "optimize", fail_optimize_once)
    store.create("kept", DIM)
    store.upsert("kept", recs, vectors)
    kept = store._shards["kept"]
    wait_until(lambda: not kept.dirty)
    wait_until(lambda: not kept.unoptimized)
    assert failures == ["raised"]
    assert optimize_failures == ["raised"]
    assert not kept.dirty  # flushed on a later round, by the same thread
    assert not kept.unoptimized
    store.close()


def test_an_edge_store_dropped_without_close_is_collected_and_its_thread_ends(tmp_path: Path) -> None:
    import gc
    import weakref

    recs, vectors = records()
    store = QdrantEdgeStore(tmp_path / "edge", flush_interval_s=0.5)  # waiting, not working, at the del
    store.create("idx", DIM)
    store.upsert("idx", recs, vectors)
    maintainer, ref = store._maintainer, weakref.ref(store)
    del store
    gc.collect()
    assert ref() is None
    assert maintainer is not None
    maintainer.join(5)
    assert not maintainer.is_alive()


MEMORY_CONFIGS = {
    "on-disk (default)": {},
    "in-ram": {"vectors_on_disk": False},
    "int8-in-ram": {"quantization": "int8", "vectors_on_disk": False},
    "int8-on-disk": {"quantization": "int8"},
}


def edge_config(root: Path, index: str) -> dict:
    import json

    return json.loads((root / index / "edge_config.json").read_text())["vectors"][""]


@pytest.mark.parametrize("options", MEMORY_CONFIGS.values(), ids=MEMORY_CONFIGS.keys())
def test_edge_memory_options_answer_like_the_default_and_persist(tmp_path: Path, options: dict) -> None:
    recs, vecs = records()
    store = QdrantEdgeStore(tmp_path, **options)
    store.create("idx", DIM)
    store.upsert("idx", recs, vecs)
    assert names_of(store.search("idx", QUERY, 10)) == ORDER
    store.close()
    stored = edge_config(tmp_path, "idx")
    assert ("quantization_config" in stored) == (options.get("quantization") == "int8")
    assert (stored.get("memory") == "cold") == options.get("vectors_on_disk", True)
    reopened = QdrantEdgeStore(tmp_path, vectors_on_disk=not options.get("vectors_on_disk", True))  # kept its own
    assert names_of(reopened.search("idx", QUERY, 10, SearchFilter(tags=("x",)))) == ["a", "b"]
    hits = reopened.search("idx", QUERY, 10)
    assert names_of(hits) == ORDER
    assert [h.score for h in hits] == pytest.approx(COSINES, abs=1e-5)
    reopened.close()
    assert edge_config(tmp_path, "idx") == stored


def test_edge_shard_reopened_with_other_memory_options_keeps_its_own(tmp_path: Path) -> None:
    recs, vecs = records()
    plain = QdrantEdgeStore(tmp_path)
    plain.create("idx", DIM)
    plain.upsert("idx", recs, vecs)
    plain.close()
    before = edge_config(tmp_path, "idx")
    other = QdrantEdgeStore(tmp_path, quantization="int8", vectors_on_disk=False)
    other.create("idx", DIM)  # exists: nothing changes
    other.upsert("idx", *records(["c"]))
    other.delete_document("idx", "doc3")
    assert names_of(other.search("idx", QUERY, 10)) == ["a", "b", "c"]
    other.create("new", DIM)  # a new shard gets this store's options
    other.close()
    assert edge_config(tmp_path, "idx") == before
    assert "quantization_config" in edge_config(tmp_path, "new")
    assert edge_config(tmp_path, "new").get("memory") != "cold"


def test_edge_memory_settings_reach_new_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import Settings
    from retrieval.vector_store import make_vector_store

    monkeypatch.setenv("RAG_EDGE_QUANTIZATION", "int8")
    monkeypatch.setenv("RAG_EDGE_VECTORS_ON_DISK", "false")
    store = make_vector_store(Settings(data_dir=tmp_path, qdrant_url=None))
    store.create("idx", DIM)
    store.close()
    stored = edge_config(tmp_path / "vectors", "idx")
    assert "quantization_config" in stored
    assert stored.get("memory") != "cold"


def test_edge_quantized_on_disk_hnsw_finds_each_vector_itself(tmp_path: Path) -> None:
    """Past Edge's indexing threshold (10 MB of vectors in a segment): HNSW over int8 codes, rescored on
    float32 originals in memory-mapped files, must still put each stored vector first for itself."""
    n, dim = 12_000, 256
    recs, vectors = random_corpus(n, dim, seed=1, documents=50)
    store = QdrantEdgeStore(tmp_path, quantization="int8", vectors_on_disk=True, optimize_idle_s=3600)
    store.create("big", dim)
    store.bulk_upsert("big", recs, vectors)
    assert store.optimize("big")  # HNSW and the int8 copy were built
    assert any("quantized" in p.name for p in (tmp_path / "big").rglob("*"))
    probes = np.random.default_rng(1).choice(n, size=50, replace=False)
    for i in probes:
        hits = store.search("big", vectors[i], 10)
        exact = store.search("big", vectors[i], 10, exact=True)
        assert hits[0].id == recs[i].id
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # rescored: the float32 cosine, not the int8 one
        assert exact[0].id == recs[i].id
    store.close()
    reopened = QdrantEdgeStore(tmp_path)
    assert reopened.search("big", vectors[probes[0]], 1)[0].id == recs[probes[0]].id
    reopened.close()
