"""HNSW builds of a Qdrant Edge shard in a child process, on a copy, swapped in when done.

``EdgeShard.optimize()`` holds the GIL for the whole build (longer as the shard grows: bench/build_stall.py),
so a build in the store's process stalls every query and write of that process. A background build therefore goes:

1. ``copy``: the flushed shard's folder is copied to ``<root>/.edge-building/<index>-<id>``. A flushed folder
   (config, segments, WAL) is a complete shard that loads elsewhere, and Edge writes there only on updates and
   flushes, so the copy is consistent as long as those wait for it (``edge_shard.Shard`` makes them wait;
   queries only read and go on). ``start`` then launches the child; from then on every update applied to the
   live shard is also kept in ``Build.journal``, and queries and writes go on against the live shard.
2. A child process (``python -m retrieval.edge_build <folder> <parent pid> [<last staged file>]``, a fresh
   interpreter: no fork of a process holding Rust and ONNX threads) loads the copy, applies the writes staged
   for it (``retrieval.edge_stage``), optimizes it, flushes and closes it. It runs at a
   lower CPU priority, so the queries it competes with get the cores first, and dies with the thread that
   started it. The parent only polls it between maintenance rounds.
3. ``warm``, with the shard lock released: the built copy's files are read into the page cache, so that the
   swap's load and the first searches after it do not read them from disk while holding the GIL.
4. ``swap`` (caller holds the shard lock; the live shard stays open, unwritten): the live folder is renamed to
   ``<root>/.edge-retired/<index>``, the built copy renamed into its place, loaded, the journal replayed in
   order (upserts by id and deletes by filter are idempotent, so the result is the live state plus the staged
   writes the child applied) and flushed;
   only then is the retired folder moved to ``<root>/.edge-trash``. The caller closes the replaced shard there
   later and deletes its folder, both without the lock (``delete``). An open shard's folder may be renamed:
   Edge reads and writes nothing by path until it closes. Closing, though, drops the shard's files from the
   page cache by the paths it was opened with, which after a swap would be the new shard's. So a process
   opens each shard through its own alias, a symlink ``<root>/.edge-open/<index>-<id>`` to the folder
   (``alias``), and the swap points the replaced shard's alias at its folder in the trash (``repoint``):
   closing it then drops only its own files (tests/integration/test_edge_build.py holds Edge to both).
   ``EdgeShard.load`` and the first flush after it hold the GIL, like ``optimize``, so the swap stalls the
   whole process for as long as they take (they grow with the shard), and so does closing the replaced shard,
   a maintenance round later, apart from it: those, not the build, are what queries still wait for.

Crash safety rests on that order: while ``.edge-retired/<index>`` exists, it is the live shard (the folder at
the live path is at most a built copy without the journal). ``recover`` (when a store opens its root) puts it
back, and deletes unfinished copies and trash. Index names start with a letter or digit, so these folders
never collide with an index.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from qdrant_edge import EdgeShard, UpdateOperation

from retrieval import edge_stage

log = logging.getLogger(__name__)

BUILDING, RETIRED, TRASH, OPEN = ".edge-building", ".edge-retired", ".edge-trash", ".edge-open"
CHILD = [sys.executable, "-m", "retrieval.edge_build"]
"""The child's command line before its arguments (folder, parent pid, and the last staged file if any)."""
_NICENESS = 10
_WARM_CHUNK = 8 << 20
_REPO = str(Path(__file__).resolve().parent.parent)  # where ``retrieval`` is importable from


@dataclass
class Build:
    folder: Path
    process: subprocess.Popen[bytes]
    errors: IO[bytes]
    """The child's stderr, read when it fails."""
    copied_at: float
    staged: list[Path] = field(default_factory=list)
    """The staged writes the child applies before it builds (``retrieval.edge_stage``)."""
    journal: list[UpdateOperation] = field(default_factory=list)
    """Every update applied to the live shard since the copy, in order."""
    flush_s: float = 0.0
    """Seconds the shard lock was held to flush before the copy (queries waited)."""
    copy_s: float = 0.0
    """Seconds the copy took (writes and flushes waited, queries went on)."""
    warm_s: float = 0.0
    """Seconds reading the built copy into the page cache before the swap (queries and writes went on)."""
    swap_s: float = 0.0
    """Seconds the shard lock was held to swap the built copy in."""
    close_s: float = 0.0
    """Seconds closing the shard it replaced, a maintenance round after the swap (holding the GIL: queries waited)."""

    def finished(self) -> bool:
        return self.process.poll() is not None

    def failure(self) -> str | None:
        """None if the child succeeded, else what it said (caller has seen ``finished()``)."""
        if self.process.returncode == 0:
            return None
        self.errors.seek(0)
        said = self.errors.read().decode(errors="replace").strip()
        return f"exit status {self.process.returncode}: {said[-2000:]}"

    def discard(self) -> None:
        """Stops the child if it still runs and deletes the copy."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.errors.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def copy(live: Path) -> Path:
    """A copy of the flushed shard at ``live``, to build on; nothing may write to ``live`` meanwhile."""
    folder = live.parent / BUILDING / f"{live.name}-{uuid.uuid4().hex[:12]}"
    folder.parent.mkdir(exist_ok=True)
    try:
        shutil.copytree(live, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def start(folder: Path, staged: Sequence[Path] = ()) -> Build:
    """Starts the child on the copy at ``folder``, to apply the ``staged`` writes and build; journal the live
    shard's updates from now on."""
    copied_at = time.monotonic()
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Build.discard, once the child has ended)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_REPO, os.environ.get("PYTHONPATH")]))}
    try:
        command = [*CHILD, str(folder), str(os.getpid()), *map(str, staged[-1:])]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors, env=env)
    except BaseException:
        errors.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Build(folder, process, errors, copied_at, list(staged))


def warm(folder: Path) -> None:
    """Reads every file under ``folder`` once, so that the page cache holds them when the swap loads the built copy
    and searches read it. A finished build's files are not cached (Edge evicts what a shard with memory-mapped
    files touched when it closes), and a cold 1M-point shard answered its first searches from disk, 100-500 ms
    each, holding the GIL. The reads release the GIL. A file deleted meanwhile (the build dropped) is skipped."""
    buffer = bytearray(_WARM_CHUNK)
    for path in sorted(folder.rglob("*")):
        try:
            with path.open("rb", buffering=0) as f:
                while f.readinto(buffer):
                    pass
        except (IsADirectoryError, FileNotFoundError):
            continue


def swap(live: Path, build: Build) -> tuple[EdgeShard, Path, Path]:
    """Puts the built copy at ``live`` with the journal replayed; returns it open, its alias, and the retired
    shard's folder, now in the trash, to ``repoint`` the replaced shard's alias at and to ``delete`` once the
    caller has closed that shard (open meanwhile; nothing may write to it).

    On failure the live folder is back at ``live`` and the error is raised."""
    retired = _sibling(live, RETIRED)
    retired.parent.mkdir(exist_ok=True)
    os.rename(live, retired)
    opened_as = None
    try:
        os.rename(build.folder, live)
        opened_as = alias(live)
        shard = EdgeShard.load(str(opened_as))
        try:
            for operation in build.journal:
                shard.update(operation)
            shard.flush()
        except BaseException:
            shard.close()
            raise
    except BaseException:
        if opened_as is not None:
            opened_as.unlink(missing_ok=True)
        _restore(retired, live)
        raise
    return shard, opened_as, _to_trash(retired)


def alias(folder: Path) -> Path:
    """A new symlink to ``folder`` in ``<root>/.edge-open``, to open the shard there through (see step 4)."""
    link = folder.parent / OPEN / f"{folder.name}-{uuid.uuid4().hex[:12]}"
    link.parent.mkdir(exist_ok=True)
    os.symlink(os.path.join("..", folder.name), link)
    return link


def repoint(link: Path, folder: Path) -> None:
    """Points the alias ``link`` at ``folder`` (a shard's folder moved elsewhere under the same root), atomically."""
    staged = link.with_name(f"{link.name}.new")
    os.symlink(os.path.relpath(folder, link.parent), staged)
    os.replace(staged, link)


def recover(root: Path) -> None:
    """Undoes what a process that died during a build or a swap left under ``root``: retired shards go back to
    their live path, unfinished copies, trash and aliases are deleted."""
    retired = root / RETIRED
    if retired.is_dir():
        for folder in retired.iterdir():
            log.warning("restoring Qdrant Edge shard %s left aside by an unfinished swap", folder.name)
            _restore(folder, root / folder.name)
    for name in (BUILDING, TRASH, RETIRED, OPEN):
        shutil.rmtree(root / name, ignore_errors=True)


def _sibling(live: Path, kind: str) -> Path:
    return live.parent / kind / live.name


def _restore(retired: Path, live: Path) -> None:
    """``retired`` back at ``live``; whatever is at ``live`` (a built copy) is discarded first."""
    if live.exists():
        _discard(live)
    os.rename(retired, live)


def delete(trashed: Path) -> None:
    """Deletes a folder ``swap`` left in the trash (``recover`` deletes what a process left there)."""
    shutil.rmtree(trashed, ignore_errors=True)


def _discard(folder: Path) -> None:
    delete(_to_trash(folder))


def _to_trash(folder: Path) -> Path:
    """One rename into the trash, before any deleting: a half-deleted folder is never at a path that counts."""
    trash = folder.parent.parent / TRASH if folder.parent.name == RETIRED else folder.parent / TRASH
    trash.mkdir(exist_ok=True)
    target = trash / f"{folder.name}-{uuid.uuid4().hex[:12]}"
    os.rename(folder, target)
    return target


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the thread that started us ends (Linux); an orphan must not write on after its parent."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        raise SystemExit("the process that started this build is gone")


def main(argv: list[str]) -> int:
    """The child: load the copy, apply the staged writes, build HNSW, flush, close."""
    folder, parent, *last_staged = argv
    _die_with_parent(int(parent))
    os.nice(_NICENESS)
    shard = EdgeShard.load(folder)
    try:
        for last in last_staged:
            edge_stage.apply(shard, edge_stage.through(Path(last)))
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
