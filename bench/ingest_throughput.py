"""End-to-end ingest throughput on SciFact vs the raw embedding throughput of the same model and texts.

End to end: the real HTTP API (``create_app`` under uvicorn on loopback, temp data dir, no LLM) with its
in-process Celery worker on the embedded stores (Qdrant Edge + the keyword engine, ``--keyword-backend``), fed
by an httpx client with keep-alive; one ``POST`` per abstract as a text file, timed from the first upload to
the last document's ``finished_at`` (searchable in both indexes). Qdrant Edge builds its HNSW index once
writes pause, after that; the bench then waits for the build and reports it beside the figure. The server runs
in a thread of this process so the worker's stages can be timed; the client shares the same two cores, as a
bulk-loading script on the same machine would. The app is warmed first with one untimed document in another
collection, so the model load is not in the figure.

Raw: ``Embedder.embed_documents`` over exactly the texts the pipeline embeds (the same parser,
chunker and title/heading prefix), with the same model and batch size. Runs alternate (raw, e2e, raw,
e2e, raw by default): this shared machine's speed drifts by 10-20% within minutes, so each end-to-end
round is compared with the mean of the raw runs on either side of it, and the verdict uses the mean
ratio of the rounds.

Where the time goes: the worker's steps are wrapped with timers for the run (parse + chunk, embed,
vector upsert and HNSW optimize, keyword add, deletes of a re-run, SQL claim and commit). They run
on the worker's two threads, so the sums are thread-seconds and may exceed the wall time.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Report, heading, print_table, progress, scifact_corpus, stopwatch
from bench.serving import UNLIMITED, free_port
from core.config import Settings
from ingest.parsers import parse_document
from ingest.records import chunk_document, embedding_text
from retrieval.embedding import Embedder

TARGET_RATIO = 0.85


def upload_file(row: dict[str, str]) -> tuple[str, bytes]:
    """One abstract as the text file a user uploads: the title as its first line."""
    return f"{row['_id']}.txt", f"{row['title']}\n\n{row['text']}\n".encode()


def pipeline_texts(files: Sequence[tuple[str, bytes]], embedder: Embedder, settings: Settings) -> list[str]:
    """What the pipeline embeds for these files (unique bytes only: the API dedupes the rest)."""
    texts: list[str] = []
    seen: set[bytes] = set()
    for _, data in files:
        if data in seen:
            continue
        seen.add(data)
        parsed = parse_document(data, "text", max_pages=settings.max_pdf_pages)
        drafts = chunk_document(parsed.sections, embedder, settings)
        texts.extend(embedding_text(d, parsed.title) for d in drafts)
    return texts


def raw_throughput(embedder: Embedder, texts: Sequence[str]) -> tuple[float, float]:
    """Chunks/s and the CPU seconds the process spent (every thread, ONNX Runtime's own included)."""
    cpu = time.process_time()
    with stopwatch() as elapsed:
        embedder.embed_documents(texts)
    return len(texts) / elapsed[0], time.process_time() - cpu


class StageTimer:
    """Thread-safe sums per stage, filled by wrapped functions while the worker runs: wall seconds, and the
    calling thread's own CPU seconds (which leave out waiting for the GIL or a core, and ONNX Runtime's
    threads: the embed stage's CPU is only its Python side)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def wrap(self, stage: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
                    self.cpu[stage] = self.cpu.get(stage, 0.0) + time.thread_time() - cpu
                    self.calls[stage] = self.calls.get(stage, 0) + 1

        return timed


@contextmanager
def instrumented(timer: StageTimer) -> Iterator[None]:
    """Wrap the pipeline's steps where the worker looks them up; restored afterwards."""
    import ingest.pipeline as pipeline
    from ingest.service import IngestService
    from retrieval.corpus_index import CorpusBackedIndex
    from retrieval.edge_shard import Shard
    from retrieval.qdrant_edge import QdrantEdgeStore
    from retrieval.retriever import HybridRetriever
    from retrieval.tantivy_index import TantivyIndex

    # The pipeline imported its steps by name: wrap them there, where it calls them.
    targets: list[tuple[Any, str, str]] = [
        (IngestService, "claim_queued_peers", "SQL claim of queued peers (batching)"),
        (pipeline, "claim", "SQL claim (processing)"),
        (pipeline, "build", "read + parse + chunk"),
        (HybridRetriever, "delete_document", "delete old chunks (both indexes)"),
        (Embedder, "embed_documents", "embed"),
        (QdrantEdgeStore, "bulk_upsert", "Edge upsert"),
        (Shard, "optimize", "Edge optimize (HNSW, in-process)"),
        (Shard, "swap", "Edge swap in of an HNSW build from a child process"),
        (CorpusBackedIndex, "add", "bm25s add (tokenize + rewrite corpus)"),
        (TantivyIndex, "add", "tantivy add (tokenize + commit a segment)"),
        (pipeline, "commit_indexed", "SQL chunk rows + indexed"),
        (IngestService, "index", "worker total (IngestService.index)"),
    ]
    present = [(owner, name, stage) for owner, name, stage in targets if hasattr(owner, name)]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in present]
    for owner, name, stage in present:
        setattr(owner, name, timer.wrap(stage, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of every live thread of this process by thread role (Linux ``/proc``; empty elsewhere).

    Python threads are named by their ``threading`` name without the trailing counter; the rest are native
    threads (ONNX Runtime's pool, the tokenizer's) that no ``threading.Thread`` owns.
    """
    names = {t.native_id: re.sub(r"[-_ ]?\d+(?: \(.*\))?$", "", t.name) for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    roles: dict[str, float] = {}
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        role = names.get(int(stat.parent.name), "native (ONNX Runtime, tokenizers)")
        roles[role] = roles.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return roles


def parse_time(value: str) -> datetime:
    stamp = datetime.fromisoformat(value)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@contextmanager
def api_server(settings: Settings) -> Iterator[tuple[Any, Any]]:
    """The app under uvicorn on a loopback port, in a thread of this process (so the stage timers see the
    worker), and an HTTP client with keep-alive: what a bulk-loading script does against ``ragctl serve``.
    Yields the client and the app."""
    import httpx
    import uvicorn

    from api.app import create_app

    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            yield client, app
    finally:
        server.should_exit = True
        thread.join(60)


def end_to_end(
    files: Sequence[tuple[str, bytes]],
    settings: Settings,
    poll_s: float,
    timer: StageTimer,
    per_request: int = 1,
    round_no: int = 1,
) -> dict[str, Any]:
    """One round into fresh collections (``scifact-<round>``) of the same data dir, by a freshly started app."""
    collection, warmup = f"scifact-{round_no}", f"warmup-{round_no}"
    with api_server(settings) as (client, app):
        client.post("/v1/collections", json={"name": warmup}).raise_for_status()
        warm = client.post(
            f"/v1/collections/{warmup}/documents",
            files={"file": ("warm.txt", f"Warm-up document {round_no} for the model.".encode())},
        )
        warm.raise_for_status()
        wait_idle(client, warmup, poll_s)
        client.post("/v1/collections", json={"name": collection}).raise_for_status()
        with instrumented(timer):
            cpu, threads_before = time.process_time(), thread_cpu()
            started = datetime.now(UTC)
            with stopwatch() as upload_s:
                for start in range(0, len(files), per_request):
                    group = files[start : start + per_request]
                    if per_request == 1:
                        name, data = group[0]
                        response = client.post(
                            f"/v1/collections/{collection}/documents", files={"file": (name, data, "text/plain")}
                        )
                    else:
                        parts = [("files", (name, data, "text/plain")) for name, data in group]
                        response = client.post(f"/v1/collections/{collection}/documents/batch", files=parts)
                    if response.status_code != 202:
                        raise RuntimeError(f"upload {group[0][0]}: {response.status_code} {response.text[:300]}")
            progress(f"{len(files)} uploads accepted in {upload_s[0]:.1f} s; waiting for the worker")
            wait_idle(client, collection, poll_s)
            cpu = time.process_time() - cpu
            threads = {role: spent - threads_before.get(role, 0.0) for role, spent in thread_cpu().items()}
        documents = all_documents(client, collection)
        hnsw_built = wait_for_hnsw(app, collection)
    finished = max(parse_time(d["finished_at"]) for d in documents)
    indexed = [d for d in documents if d["status"] == "indexed"]
    return {
        "documents": len(documents),
        "indexed": len(indexed),
        "failed": len(documents) - len(indexed),
        "chunks": sum(d["chunks"] or 0 for d in indexed),
        "seconds": (finished - started).total_seconds(),
        "upload_seconds": upload_s[0],
        "hnsw_after_seconds": (hnsw_built - finished).total_seconds() if hnsw_built else None,
        "cpu_seconds": cpu,
        "thread_cpu": threads,
    }


def wait_for_hnsw(app: Any, collection: str) -> datetime | None:
    """When Qdrant Edge finished the collection's HNSW build (it starts once writes pause); None for a vector
    store that indexes on its own."""
    from core.models import index_name
    from retrieval.qdrant_edge import QdrantEdgeStore

    store = app.state.services.vectors
    if not isinstance(store, QdrantEdgeStore):
        return None
    index = index_name(collection, 1)
    while (optimized := store.optimized_since(index)) is None:
        time.sleep(0.05)
    return datetime.now(UTC) - timedelta(seconds=time.monotonic() - optimized)


def wait_idle(client: Any, collection: str, poll_s: float) -> None:
    """Until nothing is queued or processing (one cheap count query per status per poll)."""
    last = -1
    while True:
        pending = sum(
            client.get(f"/v1/collections/{collection}/documents", params={"status": s, "limit": 1}).json()["total"]
            for s in ("queued", "processing")
        )
        if pending == 0:
            return
        if pending // 100 != last // 100:
            progress(f"{collection}: {pending} documents pending")
        last = pending
        time.sleep(poll_s)


def all_documents(client: Any, collection: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/v1/collections/{collection}/documents", params={"limit": 500, "offset": len(items)})
        page.raise_for_status()
        body = page.json()
        items.extend(body["items"])
        if not body["items"] or len(items) >= body["total"]:
            return items


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.ingest_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=1000, help="SciFact abstracts to upload (default 1000)")
    parser.add_argument("--all", action="store_true", help="all 5,183 abstracts")
    parser.add_argument(
        "--keyword-backend",
        default=Settings.model_fields["keyword_backend"].default,
        choices=["tantivy", "bm25s", "rank_bm25"],
        help="keyword engine of the embedded stores (default: the platform's)",
    )
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between status polls")
    parser.add_argument(
        "--files-per-request",
        type=int,
        default=1,
        help="1: one POST per abstract; more: POST .../documents/batch with that many files (bulk loading)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="end-to-end runs, each between two raw runs (raw, e2e, raw, e2e, raw): the machine's speed drifts",
    )
    parser.add_argument(
        "--embedding-backend", default="auto", help="RAG_EMBEDDING_BACKEND for both runs (auto, torch, onnx, onnx-int8)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temp data dir")
    args = parser.parse_args(argv)

    report = Report("bench.ingest_throughput")
    rows = scifact_corpus()
    rows = rows if args.all else rows[: args.limit]
    files = [upload_file(r) for r in rows]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir=args.work_dir) as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            llm_backend="none",
            api_key=None,
            broker_url=None,
            qdrant_url=None,
            keyword_backend=args.keyword_backend,
            embedding_device="cpu",
            embedding_backend=args.embedding_backend,
            rate_limit_upload=UNLIMITED,
            rate_limit_query=UNLIMITED,
        )
        report.start(f"Ingest throughput: {len(files):,} SciFact abstracts through the HTTP API and the worker")
        embedder = Embedder.from_settings(settings)
        texts = pipeline_texts(files, embedder, settings)
        import torch

        report.extra_facts += [
            ("embedding backend", embedder.backend),
            ("keyword backend", settings.keyword_backend),
            ("files per upload request", args.files_per_request),
            ("rounds (raw, then e2e + raw each)", args.rounds),
            ("torch threads", torch.get_num_threads()),
            ("embed batch size", settings.embed_batch_size),
        ]
        embedder.embed_documents(texts[:64])  # warm-up
        progress(f"raw embedding of {len(texts):,} chunk texts")
        raws = [raw_throughput(embedder, texts)]
        timer = StageTimer()
        runs = []
        for round_no in range(1, args.rounds + 1):
            progress(f"end to end, round {round_no} of {args.rounds}")
            runs.append(end_to_end(files, settings, args.poll, timer, args.files_per_request, round_no))
            progress(f"raw embedding again ({len(texts):,} chunk texts)")
            raws.append(raw_throughput(embedder, texts))
    print_report(runs, texts, raws, timer, settings)
    print_cpu(runs, len(texts), raws)
    report.finish()


def print_report(
    runs: Sequence[dict[str, Any]],
    texts: Sequence[str],
    raws: Sequence[tuple[float, float]],
    timer: StageTimer,
    settings: Settings,
) -> None:
    first = runs[0]
    print(
        f"\n{first['documents']:,} documents per round ({first['indexed']:,} indexed, {first['failed']} failed), "
        f"{first['chunks']:,} chunks; chunks of {settings.chunk_size_tokens} tokens, overlap "
        f"{settings.chunk_overlap_tokens}; raw texts embedded: {len(texts):,}"
    )
    table, ratios = [], []
    for round_no, run in enumerate(runs, 1):
        before, after = raws[round_no - 1][0], raws[round_no][0]
        rate = run["chunks"] / run["seconds"]
        ratios.append(rate / ((before + after) / 2))
        hnsw = run["hnsw_after_seconds"]
        table.append(
            [
                round_no,
                before,
                rate,
                after,
                run["seconds"],
                run["upload_seconds"],
                "-" if hnsw is None else f"{hnsw:.1f}",
                f"{ratios[-1]:.1%}",
            ]
        )
    print_table(
        [
            "round",
            "raw before (chunks/s)",
            "end to end (chunks/s)",
            "raw after",
            "e2e s",
            "uploading s",
            "HNSW built s later",
            "ratio",
        ],
        table,
    )
    print(
        "(HNSW built s later: Qdrant Edge builds its HNSW index once writes pause; documents are searchable, by "
        "exact search, from `indexed` on, so the build is not in the figure)"
    )
    ratio = sum(ratios) / len(ratios)
    verdict = "pass" if ratio >= TARGET_RATIO else "FAIL"
    print(
        f"\nEnd to end / raw (each round against the mean of the raw runs around it; mean of {len(runs)} rounds): "
        f"{ratio:.1%} (target >= {TARGET_RATIO:.0%}): {verdict}"
    )
    seconds = sum(run["seconds"] for run in runs)
    print(
        "\nWhere the worker's time goes, all rounds together (thread-seconds; two worker threads, so sums can "
        "exceed wall time)"
    )
    order = sorted(timer.seconds, key=timer.seconds.__getitem__, reverse=True)
    print_table(
        ["stage", "calls", "seconds", "CPU s (own thread)", "share of e2e wall"],
        [[s, timer.calls[s], timer.seconds[s], timer.cpu[s], f"{timer.seconds[s] / seconds:.0%}"] for s in order],
    )


def print_cpu(runs: Sequence[dict[str, Any]], texts: int, raws: Sequence[tuple[float, float]]) -> None:
    """On a machine whose cores the embedding saturates, end to end can only approach raw if the work around
    the embedding costs little CPU: this says how much it cost per round (the uploads' client side included,
    since the client runs in this process; the status polls are a few ms)."""
    raw_cpu = sum(cpu for _, cpu in raws) / len(raws)
    raw_wall = sum(texts / rate for rate, _ in raws) / len(raws)
    e2e_cpu = sum(run["cpu_seconds"] for run in runs) / len(runs)
    e2e_wall = sum(run["seconds"] for run in runs) / len(runs)
    heading("CPU (this process, every thread; core-seconds; means over the runs)")
    print_table(
        ["run", "CPU s", "wall s", "cores busy"],
        [
            ["raw embedding", raw_cpu, raw_wall, raw_cpu / raw_wall],
            ["end to end", e2e_cpu, e2e_wall, e2e_cpu / e2e_wall],
        ],
    )
    threads: dict[str, float] = {}
    for run in runs:
        for role, spent in run["thread_cpu"].items():
            threads[role] = threads.get(role, 0.0) + spent / len(runs)
    if threads:
        print(
            "\nEnd to end CPU by thread, per round (MainThread: the client; uvicorn: the API's event loop; AnyIO: "
            "its thread pool; ThreadPoolExecutor: the worker's two task threads; onnx-session: the ONNX sessions; "
            "edge-maintenance: Qdrant Edge's flushes and HNSW builds)"
        )
        shares = sorted(threads.items(), key=lambda item: item[1], reverse=True)
        print_table(["thread", "CPU s"], [[role, spent] for role, spent in shares if spent >= 0.05])
    extra = e2e_cpu - raw_cpu
    print(
        f"Work beyond the embedding itself: {extra:.1f} CPU s per round ({extra / raw_cpu:.0%} of the embedding's); "
        f"at the raw runs' {raw_cpu / raw_wall:.2f} busy cores the ratio cannot exceed {raw_cpu / e2e_cpu:.0%}."
    )


if __name__ == "__main__":
    main()
