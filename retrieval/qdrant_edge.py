"""Embedded vector store: Qdrant Edge (the Qdrant engine in-process), one shard per index.

Edge has no background optimizer: points land in a plain (exact-search) appendable segment and only
``EdgeShard.optimize()`` turns full segments into HNSW-indexed ones. ``optimize()`` is a no-op until a segment
crosses the indexing threshold; when it does work it holds the GIL for seconds to tens of seconds, so in this
process it would stall every query, write and embedding thread. So writes do not optimize: the maintenance
thread builds once a shard has had no write for ``optimize_idle_s`` (the end of a bulk load), or
``optimize_max_delay_s`` after the last build under a steady stream of writes, so exact search never covers
more than that much ingest. By default (``build_in_subprocess``) it builds on a copy of the shard in a child
process and swaps the result in, with the writes made meanwhile replayed (``retrieval.edge_build``): queries
and writes go on during the build; queries wait only for a flush, the swap and, a maintenance round later, the
close of the replaced shard; writes also for the copy.
Otherwise it optimizes in-process, stalling the process for the build. Points are searchable when ``upsert``
returns either way (after a bulk load into a large shard, by keywords only until their build lands: see Search),
as with Qdrant's server, whose optimizer also indexes asynchronously. Upserts that searches would skip until
their build anyway (Search) are not written into the live shard at all, but staged on disk for the child to
apply before it builds (``retrieval.edge_stage``), so past its first 10 MB (Edge's indexing threshold) a bulk
load into a large shard through ``upsert`` costs this process none of Edge's updates and flushes.
``optimize_idle_s=0`` optimizes in-process after every ``upsert`` instead; ``bulk_upsert`` never does, for a
bulk load that calls ``optimize`` (in-process, synchronous) once at the end (the benchmarks).

Nor does Edge flush on its own. Every update is in its write-ahead log when ``update`` returns, so it
survives the process dying (tested: points written after the last flush are there after ``os._exit``);
``flush()`` writes the segments and syncs the WAL to disk, which is what a power loss needs. A flush holds
the GIL throughout, so once per ingest batch it would stop the embedding threads and the API. Writes
therefore only mark the shard dirty, and the same thread flushes
dirty shards every ``flush_interval_s`` (Qdrant's server does the same, every 5 s by default);
``close()`` flushes what is left. ``flush_interval_s=0`` flushes after every write.

Search: HNSW with a beam of ``hnsw_ef_per_million`` per million points of the shard (Qdrant's default, never
narrower than the limit, where that is wider): at a fixed beam, recall against exact search falls as a shard
grows (bench/hnsw_beam.py). Points not yet in HNSW are scanned exactly, a cost linear in their number: after a
bulk load into a large shard, more than the whole HNSW search. So while HNSW covers at least
``indexed_only_min_coverage`` of a shard's points, a search skips unindexed segments past Edge's indexing
threshold (Qdrant's ``indexed_only``; a segment under it, 10 MB of vectors, is searched all the same, so
documents added between bulk loads are searchable at once) and those points become vector-searchable when their
build lands. With builds in a child process, such upserts are staged on disk instead (``retrieval.edge_stage``).

Memory: a shard is created with its payload indexes memory-mapped (see ``PAYLOAD_INDEXES``) and its float32
vectors in memory-mapped files read on demand (``vectors_on_disk``, the default: a load maps them instead of
reading them all, and a load holds the GIL) or read into RAM at load (Edge's default), by choice with an int8
scalar-quantized copy pinned in RAM (``quantization="int8"``). Edge keeps that choice in the shard's
``edge_config.json`` and a reopened shard keeps it, whatever this store was constructed with. Every search
asks for rescoring: a quantized shard ranks its HNSW candidates again on the float32 originals, so its order
is the float32 one; a shard without quantization ignores the request.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    FloatIndexParams,
    KeywordIndexParams,
    MatchAny,
    Memory,
    PayloadSelector,
    Point,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    RangeFloat,
    ScalarQuantizationConfig,
    ScalarType,
    SearchParams,
    UpdateOperation,
)

from core.errors import BadInput, Conflict, NotFound
from core.types import ChunkRecord, Hit, SearchFilter
from retrieval import edge_build, edge_stage
from retrieval.edge_shard import INDEXING_THRESHOLD_BYTES, Shard, stored_dim
from retrieval.payload import RANKING_FIELDS, check_index_name, chunk_payload
from retrieval.qdrant_filters import PAYLOAD_FIELDS, qdrant_filter

log = logging.getLogger(__name__)

# Indexed so Qdrant's planner can filter inside the HNSW search. Memory-mapped (Memory.Cold), not read into RAM:
# a load then maps them, where rebuilding them in RAM is most of what EdgeShard.load does on a large shard, and a
# loading shard holds the GIL (the swap after a background build, a restart: bench/build_stall.py). Searches and
# deletes read them through the page cache.
_INDEX_PARAMS = {"keyword": KeywordIndexParams, "float": FloatIndexParams}
PAYLOAD_INDEXES = {field: _INDEX_PARAMS[kind](memory=Memory.Cold) for field, kind in PAYLOAD_FIELDS.items()}
_UPSERT_BATCH = 256
_FATAL = (SystemExit, KeyboardInterrupt)
QUANTIZATIONS = ("none", "int8")
# Rescoring on the float32 originals: a quantized shard's ranking is then the unquantized one (ignored by a
# shard without quantization). Exact search reads the originals too, never the int8 copy.
_RESCORE = QuantizationSearchParams(rescore=True)
_RANKING_PAYLOAD = PayloadSelector.Include(list(RANKING_FIELDS))
_EXACT = SearchParams(exact=True, quantization=QuantizationSearchParams(ignore=True))
_FILTER_MODELS = SimpleNamespace(Filter=Filter, FieldCondition=FieldCondition, MatchAny=MatchAny, Range=RangeFloat)


def edge_filter(flt: SearchFilter | None) -> Filter | None:
    return qdrant_filter(flt, _FILTER_MODELS)


class QdrantEdgeStore:
    """One Edge shard per index under ``root/<index>/``; HNSW, cosine distance.

    Each folder can be open in one process only (Edge locks it), so the API and an out-of-process
    worker cannot share this backend; use a Qdrant server for that.
    """

    name = "qdrant_edge"

    def __init__(
        self,
        root: Path,
        flush_interval_s: float = 5.0,
        optimize_idle_s: float = 2.0,
        optimize_max_delay_s: float = 300.0,
        quantization: str = "none",
        vectors_on_disk: bool = True,
        build_in_subprocess: bool = True,
        hnsw_ef_per_million: int = 0,
        indexed_only_min_coverage: float = 0.5,
    ) -> None:
        if flush_interval_s < 0 or optimize_idle_s < 0 or optimize_max_delay_s <= 0:
            raise ValueError("flush_interval_s and optimize_idle_s must be >= 0, optimize_max_delay_s > 0")
        if indexed_only_min_coverage < 0:
            raise ValueError("indexed_only_min_coverage must be >= 0")
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        self._quantization = quantization
        self._hnsw_ef_per_million = hnsw_ef_per_million
        self._vectors_on_disk = vectors_on_disk
        self._indexed_only_min_coverage = indexed_only_min_coverage
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, Shard] = {}
        self._lock = threading.Lock()
        self._flush_interval_s = flush_interval_s
        self._optimize_idle_s = optimize_idle_s
        self._optimize_max_delay_s = optimize_max_delay_s
        self._build_in_subprocess = build_in_subprocess
        edge_build.recover(self._root)  # before any shard is opened: the folders are this process's now
        self._flushed_at = time.monotonic()  # read and written by the maintenance thread only
        self._maintainer: threading.Thread | None = None
        self._closing = threading.Event()

    def _path(self, index: str) -> Path:
        return self._root / check_index_name(index)

    def _on_disk(self, index: str) -> bool:
        # Edge persists its configuration there on create; a folder without it never finished.
        return (self._path(index) / "edge_config.json").exists()

    def _open(self, index: str) -> Shard | None:
        with self._lock:
            opened = self._shards.get(index)
            loaded = (opened is None or opened.closed) and self._on_disk(index)
            if loaded:
                path = self._path(index)
                alias = edge_build.alias(path)
                try:
                    shard = EdgeShard.load(str(alias))
                except BaseException:
                    alias.unlink()
                    raise
                shard.flush()  # the first flush after a load holds the GIL longest (1.1 s at 1M points): not mid-load
                opened = self._shards[index] = Shard(shard, path, alias)
        if loaded:
            self._start_maintainer()  # to optimize what its last process left unindexed
        return opened

    @contextmanager
    def _held(self, index: str, writes: bool = False) -> Iterator[Shard]:
        """The index's open shard, under its lock; for ``writes``, once no copy of its folder is being taken."""
        opened = self._open(index)
        if opened is None:
            raise NotFound(f"vector index {index!r} does not exist")
        with opened.lock:
            if writes:
                opened.wait_for_copy()
            if opened.closed:  # dropped or closed since it was looked up
                raise NotFound(f"vector index {index!r} does not exist")
            yield opened

    @contextmanager
    def _locked(self, index: str) -> Iterator[EdgeShard]:
        with self._held(index) as opened:
            yield opened.shard

    @contextmanager
    def _writing(self, index: str) -> Iterator[Shard]:
        """``_held`` for updates (``Shard.update``): flushed now (interval 0) or later by the maintenance thread."""
        with self._held(index, writes=True) as opened:
            try:
                yield opened
            finally:  # a write that failed part-way may have applied some operations
                opened.wrote()
            if self._flush_interval_s == 0 or self._closing.is_set():
                opened.flush()
        self._start_maintainer()

    def _start_maintainer(self) -> None:
        if self._flush_interval_s == 0 and self._optimize_idle_s == 0:
            return  # writes do both themselves
        positive = [s for s in (self._flush_interval_s, self._optimize_idle_s) if s > 0]
        tick = min([*positive, self._optimize_max_delay_s]) / 2
        with self._lock:
            if self._maintainer is None and not self._closing.is_set():
                self._maintainer = threading.Thread(
                    target=_maintain_periodically,
                    args=(weakref.ref(self), self._closing, tick),
                    name="edge-maintenance",
                    daemon=True,
                )
                self._maintainer.start()

    def maintain(self) -> None:
        """One round of the maintenance thread: build HNSW where writes paused, flush when it is time.

        A shard that fails stays due and is retried (a build after ``optimize_max_delay_s``); the others go
        on. Rust panics (pyo3's ``PanicException``) derive from ``BaseException``: caught too, or the thread
        would end and nothing would be optimized or flushed again.
        """
        now = time.monotonic()
        with self._lock:
            shards = list(self._shards.values())
        if self._optimize_idle_s > 0:
            for opened in shards:
                with _logged("optimizing"):
                    if self._build_in_subprocess:
                        opened.build_if_due(
                            now, self._optimize_idle_s, self._optimize_max_delay_s, INDEXING_THRESHOLD_BYTES
                        )
                    else:
                        opened.optimize_if_due(now, self._optimize_idle_s, self._optimize_max_delay_s)
        if self._flush_interval_s > 0 and now - self._flushed_at >= self._flush_interval_s:
            self._flushed_at = now
            for opened in shards:
                with _logged("flushing"):
                    opened.flush_if_dirty()

    def optimized_since(self, index: str) -> float | None:
        """``time.monotonic()`` of the last optimize if nothing was written since (every point then sits in
        an HNSW-indexed segment or one too small to need it), else None."""
        with self._held(index) as opened:
            return None if opened.unoptimized else opened.optimized_at

    def flush(self) -> None:
        """Write every shard's pending updates to disk (segments and WAL)."""
        with self._lock:
            shards = list(self._shards.values())
        for opened in shards:
            opened.flush_if_dirty()

    def create(self, index: str, dim: int) -> None:
        if dim < 1:
            raise BadInput(f"vector dimension must be positive, got {dim}")
        # Edge's optimizer defaults keep few segments, so a search visits few HNSW graphs, at the price
        # of optimize() re-merging into the large segment (more segments make optimize cheaper and every
        # search slower; searches are the hot path).
        config = EdgeConfig(vectors=self._vector_params(dim))
        with self._lock:
            if index in self._shards or self._on_disk(index):
                self._check_dim(index, dim)
                return
            path = self._path(index)
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(edge_stage.folder_for(path), ignore_errors=True)  # a drop's that did not finish
            path.mkdir()
            alias = edge_build.alias(path)
            shard = EdgeShard.create(str(alias), config)
            for field, schema in PAYLOAD_INDEXES.items():
                shard.update(UpdateOperation.create_field_index(field, schema))
            shard.flush()
            self._shards[index] = Shard(shard, path, alias)

    def _vector_params(self, dim: int) -> EdgeVectorParams:
        """Cosine vectors placed as this store was configured; None leaves Edge's default (cached in RAM)."""
        quantized = None
        if self._quantization == "int8":
            # The 0.99 quantile clips outlier components so the 256 levels cover the bulk of the values.
            quantized = ScalarQuantizationConfig(type=ScalarType.Int8, quantile=0.99, memory=Memory.Pinned)
        return EdgeVectorParams(
            size=dim,
            distance=Distance.Cosine,
            memory=Memory.Cold if self._vectors_on_disk else None,
            quantization_config=quantized,
        )

    def _check_dim(self, index: str, dim: int) -> None:
        stored = stored_dim(self._path(index))
        if stored != dim:
            raise Conflict(f"vector index {index!r} holds {stored}-dimensional vectors, not {dim}")

    def drop(self, index: str) -> None:
        with self._lock:
            opened = self._shards.pop(index, None)
            if opened is not None:
                opened.close(flush=False)  # its folder is deleted next
            shutil.rmtree(edge_stage.folder_for(self._path(index)), ignore_errors=True)
            shutil.rmtree(self._path(index), ignore_errors=True)

    def exists(self, index: str) -> bool:
        with self._lock:
            return index in self._shards or self._on_disk(index)

    def upsert(self, index: str, records: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        """Searchable on return (see Search for when by vectors); HNSW is built now (``optimize_idle_s=0``) or in the
        background. Staged for the next build instead of written here where searches would skip the points."""
        vectors = _checked(records, vectors)
        if not self._staged(index, records, vectors):
            self.bulk_upsert(index, records, vectors)
        if self._optimize_idle_s == 0 or self._closing.is_set():  # closed: no thread will
            self.optimize(index)

    def _staged(self, index: str, records: Sequence[ChunkRecord], vectors: np.ndarray) -> bool:
        """Stages the upsert if ``_stages`` says so (the file written and synced with the lock released); False:
        it is for the live shard."""
        if not (self._build_in_subprocess and self._optimize_idle_s > 0 and records):
            return False
        with self._held(index) as opened:
            if not self._stages(opened, len(records)):
                return False
            folder = opened.stage.folder
        payloads = [chunk_payload(record) for record in records]
        prepared: Path | None = edge_stage.prepare_upsert(folder, [r.id for r in records], vectors, payloads)
        try:
            with self._held(index) as opened:
                if not self._stages(opened, len(records)):  # the stage was applied meanwhile
                    return False
                opened.stage.upsert(prepared, len(records))  # type: ignore[arg-type]
                opened.staged()
                prepared = None
        finally:
            if prepared is not None:
                prepared.unlink(missing_ok=True)
        self._start_maintainer()
        return True

    def _stages(self, opened: Shard, points: int) -> bool:
        """Caller holds the lock. Whether an upsert of ``points`` goes to the stage: searches would skip them (past
        the indexing threshold, counting what is unindexed and staged, and HNSW covers the minimum share). Where
        they would not but the stage holds writes, those are applied here first (a running build is dropped), so
        the upsert goes live after them, where searches scan it."""
        info = opened.shard.info()
        indexed, waiting = int(info.indexed_vectors_count), int(info.points_count) + opened.stage.points + points
        skipped = (waiting - indexed) * opened.dim * 4 >= INDEXING_THRESHOLD_BYTES and self._skips_unindexed(
            waiting, indexed
        )
        if opened.stage and not skipped:
            opened.apply_stage()
        return skipped

    def bulk_upsert(self, index: str, records: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        """Upsert into the live shard without building HNSW inline (never staged); call ``optimize`` once after
        the last batch.

        The shard lock is taken per batch of ``_UPSERT_BATCH`` points, and only for Edge's update (the points are
        built before): a query waits for one batch's update at most, not for a whole bulk write."""
        vectors = _checked(records, vectors)
        if not records:
            return
        with self._held(index) as opened:
            opened.apply_stage()  # written after what is staged, as they were made
        for start in range(0, len(records), _UPSERT_BATCH):
            batch = records[start : start + _UPSERT_BATCH]
            rows = vectors[start : start + _UPSERT_BATCH].tolist()
            points = [Point(record.id, row, chunk_payload(record)) for record, row in zip(batch, rows, strict=True)]
            with self._writing(index) as opened:
                opened.update(UpdateOperation.upsert_points(points))

    def optimize(self, index: str) -> bool:
        """Apply the staged writes, build HNSW for segments past the indexing threshold; True if anything was
        rebuilt."""
        with self._held(index) as opened:
            return opened.optimize()

    def delete_document(self, index: str, document_id: str) -> None:
        if not self.exists(index):
            return
        with self._writing(index) as opened:
            if opened.stage:  # after the staged upserts it may delete; first, so a crash cannot undo the delete
                opened.stage.delete_document(document_id)
            opened.update(edge_stage.delete_document(document_id))

    def search(
        self,
        index: str,
        vector: np.ndarray,
        limit: int,
        flt: SearchFilter | None = None,
        full_payload: bool = True,
        exact: bool = False,
    ) -> list[Hit]:
        """``exact``: brute force over the float32 vectors instead of HNSW (the reference for its recall)."""
        if limit < 1 or not self.exists(index):
            return []
        query, condition = Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()), edge_filter(flt)
        # Edge holds the GIL while it searches, converting each payload included: asking for less is faster.
        wanted = True if full_payload else _RANKING_PAYLOAD
        with self._locked(index) as shard:
            params = _EXACT if exact else self._search_params(shard, limit)
            request = QueryRequest(limit=limit, query=query, filter=condition, with_payload=wanted, params=params)
            points = shard.query(request)
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def payloads(self, index: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids or not self.exists(index):
            return {}
        with self._locked(index) as shard:
            records = shard.retrieve(list(ids), with_payload=True, with_vector=False)
        return {str(r.id): dict(r.payload or {}) for r in records}

    def _search_params(self, shard: EdgeShard, limit: int) -> SearchParams:
        """HNSW's beam for ``shard``: ``hnsw_ef_per_million`` per million points, unset below ``limit``; unindexed
        segments past the indexing threshold skipped while HNSW covers ``indexed_only_min_coverage`` of the points."""
        info = shard.info()
        points = int(info.points_count)
        beam = points * self._hnsw_ef_per_million // 1_000_000
        indexed_only = self._skips_unindexed(points, int(info.indexed_vectors_count))
        return SearchParams(hnsw_ef=beam if beam > limit else None, quantization=_RESCORE, indexed_only=indexed_only)

    def _skips_unindexed(self, points: int, indexed: int) -> bool:
        return indexed >= self._indexed_only_min_coverage * points

    def awaiting_build(self, index: str) -> int:
        """Points that searches skip until their build lands: the staged ones, and those outside HNSW while more
        than Edge's indexing threshold holds (a smaller unindexed segment is searched) and HNSW covers
        ``indexed_only_min_coverage``. 0 once their build lands."""
        if not self.exists(index):
            return 0
        with self._held(index) as opened:
            info = opened.shard.info()
            points, indexed = int(info.points_count), int(info.indexed_vectors_count)
            waiting = max(0, points - indexed)
            if waiting * opened.dim * 4 < INDEXING_THRESHOLD_BYTES or not self._skips_unindexed(points, indexed):
                waiting = 0
            return waiting + opened.stage.points

    def count(self, index: str) -> int:
        """Points in the live shard plus those staged for its next build (an id staged over a live one, or twice,
        counts twice until that build lands)."""
        if not self.exists(index):
            return 0
        with self._held(index) as opened:
            return int(opened.shard.count(CountRequest(exact=True))) + opened.stage.points

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            maintainer, self._maintainer = self._maintainer, None
            shards, self._shards = self._shards, {}
        if maintainer is not None:
            maintainer.join()
        errors = []
        for opened in shards.values():
            try:
                opened.close()
            except Exception as exc:  # every shard is closed; the first failure is reported after
                errors.append(exc)
        if errors:
            raise errors[0]


def _checked(records: Sequence[ChunkRecord], vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(records):
        raise BadInput(f"got {vectors.shape} vectors for {len(records)} records")
    return vectors


@contextmanager
def _logged(doing: str) -> Iterator[None]:
    """Logs and swallows one shard's failure so the maintenance thread goes on (``BaseException``: pyo3
    panics are not ``Exception``s); only an exit or an interrupt propagates."""
    try:
        yield
    except _FATAL:
        raise
    except BaseException:
        log.exception("%s a Qdrant Edge shard failed", doing)


def _maintain_periodically(store: weakref.ref[QdrantEdgeStore], closing: threading.Event, tick_s: float) -> None:
    """Holds the store only weakly between rounds: a store dropped without ``close()`` is still collected."""
    while not closing.wait(tick_s):
        opened = store()
        if opened is None:
            return
        opened.maintain()
        del opened
