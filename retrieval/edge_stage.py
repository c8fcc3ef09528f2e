"""Writes to a large, indexed Qdrant Edge shard, staged on disk for its next build in a child process.

While HNSW covers ``indexed_only_min_coverage`` of a shard, searches skip unindexed points past Edge's indexing
threshold (``retrieval.qdrant_edge``, Search), so a bulk load's points are not vector-searchable before their
build lands, however they are written. Written into the live shard they still cost the serving process: Edge's
update, the flushes of what they add and the growing write-ahead log hold the GIL, and every query waits
(bench/build_stall.py). So once an upsert would take a shard's unindexed points past the threshold while searches
skip them, it is staged here instead, and so is every upsert after it while the stage holds anything and
searches would skip its points: each is one file (ids, vectors, payloads) written, synced and renamed into
``<root>/.edge-staged/<index>/`` before ``upsert`` returns. The next build's child applies the staged files, in
order, to its copy of the shard before it builds (``apply``). Deletes are staged first while anything is
staged, then applied to the live shard, so the child sees every operation in the order it was made. Staged
files are deleted, oldest first, when the build that applied them is swapped in, or once they were applied in
this process (``optimize``, ``bulk_upsert``, and an upsert that would take HNSW below its share of the shard:
the stage, then the upsert, go live); until then they outlive a restart and a failed build, and the next build
applies them again (upserts by id and deletes by filter are idempotent, and a tail of the sequence re-applied
leaves what the whole sequence left). A rename is not synced to the folder, so a staged write survives the
process dying, and a power loss only as far as Edge's own write-ahead log does before a flush.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import EdgeShard, FieldCondition, Filter, MatchValue, Point, UpdateOperation

STAGED = ".edge-staged"
_UPSERT, _DELETE = "upsert.npz", "delete.json"
_APPLY_BATCH = 256


def folder_for(live: Path) -> Path:
    """Where the shard at ``live`` stages its writes (a sibling of the build folders; index names never start
    with a dot)."""
    return live.parent / STAGED / live.name


class Stage:
    """The staged writes of one shard, oldest first. Not thread-safe: the caller holds the shard's lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: list[Path] = []
        self.points = 0
        """Points in the staged upserts (an id staged twice counts twice)."""
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.name.endswith((_UPSERT, _DELETE)):
                    self.files.append(path)
                    self.points += _points_in(path)
                else:  # a write that died before its rename
                    path.unlink(missing_ok=True)
        self._next = _sequence(self.files[-1]) + 1 if self.files else 0

    def __bool__(self) -> bool:
        return bool(self.files)

    def upsert(self, prepared: Path, points: int) -> None:
        """Puts a file from ``prepare_upsert`` last in the stage."""
        self._commit(prepared, f"{points}.{_UPSERT}")
        self.points += points

    def delete_document(self, document_id: str) -> None:
        prepared = _written(self.folder, json.dumps({"document_id": document_id}).encode())
        self._commit(prepared, f"0.{_DELETE}")

    def _commit(self, prepared: Path, suffix: str) -> None:
        target = self.folder / f"{self._next:012d}-{suffix}"
        os.rename(prepared, target)
        self._next += 1
        self.files.append(target)

    def consumed(self, files: Iterable[Path]) -> None:
        """Deletes ``files`` (applied to a shard that is now the live one) from the stage, oldest first: a process
        killed midway leaves a tail of the sequence, which applied again changes nothing."""
        done = sorted(files)
        for path in done:
            path.unlink(missing_ok=True)
        gone = set(done)
        self.files = [p for p in self.files if p not in gone]
        self.points = sum(_points_in(p) for p in self.files)

    def leading_deletes(self) -> list[Path]:
        """The delete files before the first staged upsert."""
        leading = []
        for path in self.files:
            if not path.name.endswith(_DELETE):
                break
            leading.append(path)
        return leading


def prepare_upsert(folder: Path, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> Path:
    """Writes and syncs a staged upsert under a temporary name in ``folder``; ``Stage.upsert`` puts it in place.
    No lock is needed (the disk write is the slow part of staging, and queries need not wait for it)."""
    buffer = _npz(
        ids=np.asarray(ids, dtype=np.str_),
        vectors=np.asarray(vectors, dtype=np.float32),
        payloads=np.asarray(json.dumps(list(payloads))),
    )
    return _written(folder, buffer)


def apply(shard: EdgeShard, files: Sequence[Path]) -> None:
    """Applies staged ``files`` to ``shard``, in order."""
    for path in files:
        if path.name.endswith(_DELETE):
            shard.update(delete_document(json.loads(path.read_text())["document_id"]))
            continue
        with np.load(path, allow_pickle=False) as staged:
            ids, vectors, payloads = staged["ids"], staged["vectors"], json.loads(str(staged["payloads"]))
        for start in range(0, len(ids), _APPLY_BATCH):
            end = start + _APPLY_BATCH
            rows = vectors[start:end].tolist()
            batch = zip(ids[start:end], rows, payloads[start:end], strict=True)
            points = [Point(str(i), row, payload) for i, row, payload in batch]
            shard.update(UpdateOperation.upsert_points(points))


def delete_document(document_id: str) -> UpdateOperation:
    """Edge's operation deleting every point of ``document_id`` (live, and when a staged delete is applied)."""
    condition = FieldCondition(key="document_id", match=MatchValue(document_id))
    return UpdateOperation.delete_points_by_filter(Filter(must=[condition]))


def through(last: Path) -> list[Path]:
    """The staged files of ``last``'s stage up to ``last``, oldest first (what a build was started with: the
    child gets the last one's path, not a command line that grows with the stage)."""
    return sorted(p for p in last.parent.iterdir() if p.name.endswith((_UPSERT, _DELETE)) and p.name <= last.name)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _written(folder: Path, data: bytes) -> Path:
    """``data`` in a new synced file in ``folder`` whose name marks it unfinished (``Stage`` deletes such files)."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _sequence(path: Path) -> int:
    return int(path.name.split("-", 1)[0])


def _points_in(path: Path) -> int:
    """From the name ``<sequence>-<points>.<kind>``."""
    return int(path.name.split("-", 1)[1].split(".", 1)[0])
