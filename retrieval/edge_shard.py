"""One open Qdrant Edge shard and its upkeep: the lock every use takes, flushing, staged writes, HNSW builds.

A build runs in this process (``optimize``, holding the GIL throughout) or in a child process on a copy of
the shard (``build_if_due``, ``retrieval.edge_build``); the store's maintenance thread picks which and when.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

from qdrant_edge import EdgeShard, UpdateOperation

from core.fair_lock import FairLock
from retrieval import edge_build, edge_stage

log = logging.getLogger(__name__)

INDEXING_THRESHOLD_BYTES = 10_000 * 1024
"""Edge's default optimizer threshold: a segment with fewer bytes of vectors gets no HNSW graph. Optimizing a
shard smaller than that only merges segments (milliseconds), less than a child process costs to start."""


def stored_dim(path: Path) -> int:
    """The vector size of the shard at ``path``: Edge persists its configuration as JSON next to the segments
    (the unnamed vector is "")."""
    config = json.loads((path / "edge_config.json").read_text())
    return int(config["vectors"][""]["size"])


class Shard:
    def __init__(self, shard: EdgeShard, path: Path, alias: Path) -> None:
        self.shard = shard
        self.path = path
        self.alias = alias  # the path ``shard`` was opened through (``edge_build.alias``)
        self.dim = stored_dim(path)
        # Guards the fields below and every use of ``shard``. Fair: a bulk load's back-to-back writes must not
        # keep queries waiting for the whole load.
        self.lock = FairLock()
        # A build's copy of the folder is being taken, without ``lock``: queries go on, but nothing may write
        # files (updates, flushes, optimize, close) until ``settled`` is notified.
        self.copying = False
        self.settled = threading.Condition(self.lock)
        self.dirty = False  # written since the last flush
        self.stage = edge_stage.Stage(edge_stage.folder_for(path))  # writes for the next build to apply
        self.closed = False  # dropped or closed: the maintenance thread may still hold this object
        # Written since the last optimize. A shard opened with points outside HNSW counts (its last process
        # ended before optimizing); one fully indexed does not: a copy and a child would rebuild nothing.
        info = shard.info()
        self.unoptimized = int(info.indexed_vectors_count) < int(info.points_count) or bool(self.stage)
        self.written_at = self.optimized_at = time.monotonic()
        self.retry_at = 0.0  # after a failed build: not before then
        self.build: edge_build.Build | None = None  # a build in a child process, on a copy
        # The shards swaps replaced, with their aliases, folders (in the trash) and the builds that replaced them,
        # open until the next maintenance round closes them.
        self.replaced: list[tuple[EdgeShard, Path, Path, edge_build.Build]] = []
        self.last_build: edge_build.Build | None = None  # the last one swapped in (its timings)

    def wait_for_copy(self) -> None:
        """Caller holds ``lock`` (released while waiting); returns once no copy of the folder is being taken."""
        while self.copying:
            self.settled.wait()

    def update(self, operation: UpdateOperation) -> None:
        """Caller holds ``lock``. Journaled while a build runs, to be replayed on the built copy."""
        self.shard.update(operation)
        if self.build is not None:
            self.build.journal.append(operation)

    def wrote(self) -> None:
        self.dirty = self.unoptimized = True
        self.written_at = time.monotonic()

    def staged(self) -> None:
        """Caller holds ``lock``: a write went to the stage (nothing to flush, a build to start)."""
        self.unoptimized = True
        self.written_at = time.monotonic()

    def apply_stage(self) -> None:
        """Caller holds ``lock``. The staged writes applied in this process (holding the GIL), flushed, and deleted
        from the stage; a build in progress is dropped (it would not have them all)."""
        if not self.stage:
            return
        self.wait_for_copy()
        self.drop_build()
        files = list(self.stage.files)
        edge_stage.apply(self.shard, files)
        self.wrote()
        self.flush()  # on disk before the staged files are deleted
        self.stage.consumed(files)

    def flush(self) -> None:
        """Caller holds ``lock``."""
        self.wait_for_copy()
        self.shard.flush()
        self.dirty = False

    def flush_if_dirty(self) -> None:
        with self.lock:
            if self.dirty and not self.closed:
                self.flush()

    def optimize(self) -> bool:
        """Caller holds ``lock``. In this process, now: a background build in progress is dropped. A rebuilt shard
        is flushed at once: the build was the expensive part."""
        self.wait_for_copy()
        self.drop_build()
        self.apply_stage()
        changed = self.shard.optimize()
        self.unoptimized = False
        self.optimized_at = time.monotonic()
        if changed:
            self.flush()
        return changed

    def due(self, now: float, idle_s: float, max_delay_s: float) -> bool:
        """Caller holds ``lock``."""
        if self.closed or not self.unoptimized or now < self.retry_at or self.build is not None:
            return False
        return now - self.written_at >= idle_s or now - self.optimized_at >= max_delay_s

    def vector_bytes(self) -> int:
        """Caller holds ``lock``. Bytes of the float32 vectors of the shard's points."""
        return int(self.shard.info().points_count) * self.dim * 4

    def optimize_if_due(self, now: float, idle_s: float, max_delay_s: float) -> None:
        """The build in this process, holding the GIL throughout."""
        with self.lock:
            if self.due(now, idle_s, max_delay_s):
                try:
                    self.optimize()
                except BaseException:  # a failing build (seconds of GIL) is not retried every tick
                    self.retry_at = time.monotonic() + max_delay_s
                    raise

    def build_if_due(self, now: float, idle_s: float, max_delay_s: float, child_min_bytes: int = 0) -> None:
        """Starts a build in a child process when one is due; swaps it in once the child is done. A shard with
        fewer than ``child_min_bytes`` of vectors is optimized here instead (see ``INDEXING_THRESHOLD_BYTES``)."""
        self.close_replaced()
        with self.lock:
            try:
                if self.build is None and self.due(now, idle_s, max_delay_s):
                    if self.vector_bytes() < child_min_bytes:
                        self.optimize()
                    else:
                        self.start_build()
                elif self.build is not None and self.build.finished():
                    self.warm_build()
                    if self.build is not None:  # not dropped while it was read
                        self.swap()
            except BaseException:  # the live shard serves on; retried like a failing build in-process
                self.retry_at = time.monotonic() + max_delay_s
                raise

    def close_replaced(self) -> None:
        """Closes the shards that swaps replaced and deletes their folders, without ``lock``: nothing uses them.
        Closing a shard holds the GIL (longer as the shard grows), so it is not done in the swap, under the lock,
        where the queries it stalls would queue behind the swap's own stall, but a maintenance round later."""
        with self.lock:
            replaced, self.replaced = self.replaced, []
        errors = []
        for shard, alias, folder, build in replaced:
            began = time.monotonic()
            try:
                shard.close()
                build.close_s = time.monotonic() - began
            except BaseException as exc:  # every one is closed; the first failure is raised after
                errors.append(exc)
            finally:
                alias.unlink(missing_ok=True)
                edge_build.delete(folder)
        if errors:
            raise errors[0]

    def start_build(self) -> None:
        """Caller holds ``lock``: flushes, copies the folder with ``lock`` released (writes wait for the copy,
        queries do not), starts the child."""
        began = time.monotonic()
        self.flush()
        flushed = time.monotonic()
        self.copying = True
        self.lock.release()
        try:
            folder = edge_build.copy(self.path)
        finally:
            self.lock.acquire()
            self.copying = False
            self.settled.notify_all()
        copied = time.monotonic()
        if self.closed:  # closed while copying: no build
            shutil.rmtree(folder, ignore_errors=True)
            return
        self.build = edge_build.start(folder, self.stage.files)
        self.build.flush_s, self.build.copy_s = flushed - began, copied - flushed

    def warm_build(self) -> None:
        """Caller holds ``lock``: reads the finished build's files into the page cache with ``lock`` released (see
        ``edge_build.warm``); writes made meanwhile are journaled as during the build."""
        build = self.build
        assert build is not None
        began = time.monotonic()
        self.lock.release()
        try:
            edge_build.warm(build.folder)
        finally:
            self.lock.acquire()
        build.warm_s = time.monotonic() - began

    def swap(self) -> None:
        """Caller holds ``lock`` and the child has finished: its shard replaces the live one, or the live one stays
        and the error is raised. The replaced shard stays open, in the trash, for ``close_replaced``."""
        build, self.build = self.build, None
        assert build is not None
        began = time.monotonic()
        try:
            failure = build.failure()
            if failure is not None:
                raise RuntimeError(f"the HNSW build in a child process failed ({failure})")
            if self.dirty:
                self.shard.flush()
            shard, alias, trashed = edge_build.swap(self.path, build)
        finally:
            build.discard()
        self.replaced.append((self.shard, self.alias, trashed, build))
        replaced_alias, self.shard, self.alias = self.alias, shard, alias
        try:
            edge_build.repoint(replaced_alias, trashed)  # so that its close drops its own files from the page cache
        except OSError:  # then that close drops the live shard's files from the cache too: slower, not wrong
            log.exception("could not point the alias of a replaced Qdrant Edge shard at its folder")
        self.dirty = False
        # In the live shard now: the files the child applied, and the deletes staged after them (replayed from the
        # journal, with no staged upsert before them to act on).
        self.stage.consumed(build.staged)
        self.stage.consumed(self.stage.leading_deletes())
        self.unoptimized = self.written_at > build.copied_at or bool(self.stage)
        self.optimized_at = time.monotonic()
        build.swap_s = self.optimized_at - began
        self.last_build = build
        log.info(
            "swapped in Qdrant Edge shard %s built in a child process: %d updates replayed; lock held %.2f s to flush, "
            "%.2f s to swap; writes waited %.2f s for the copy",
            self.path.name,
            len(build.journal),
            build.flush_s,
            build.swap_s,
            build.copy_s,
        )

    def drop_build(self) -> None:
        """Caller holds ``lock``."""
        build, self.build = self.build, None
        if build is not None:
            build.discard()

    def close(self, flush: bool = True) -> None:
        """Closed even if the flush fails (the error is raised after): the handle must not leak."""
        try:
            with self.lock:
                self.wait_for_copy()
                if self.closed:
                    return
                self.closed = True  # no swap from now on: the replaced shards are all in ``replaced``
                self.drop_build()
                try:
                    if flush:
                        self.shard.flush()
                finally:
                    self.shard.close()
                    self.alias.unlink(missing_ok=True)
        finally:
            self.close_replaced()
