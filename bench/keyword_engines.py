"""Keyword engines side by side: bm25s (today's default) vs tantivy (segments), same corpus, same run.

Speed, at ``--chunks`` windows of real SciFact text (the corpus ``bench/retrieval_latency.py`` builds, text
only: no vectors are needed here), each engine in a fresh child process so its memory is its own: bulk
build (until the first query answers), top-200 query latency over SciFact queries, one 3-chunk document
added until searchable and deleted (wall time and the process's CPU time, every thread included), reopen
from disk to the first answered query, resident memory and index size on disk.

Quality, SciFact nDCG@10 on test and train (the split tuning reads): keyword alone on whole abstracts and
on the platform's chunks (``bench/tune_retrieval.py``'s offline replay of the upload path), and hybrid on
those chunks with the platform's fusion (convex 0.55 / 0.45 by document over 200 candidates per side,
exact cosine on the ``onnx-int8`` embeddings cached by that bench; missing ones are computed first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    Report,
    abstract_text,
    cache_dir,
    heading,
    print_table,
    progress,
    rss_mb,
    scifact_corpus,
    scifact_dir,
    stopwatch,
    summary_ms,
)
from bench.retrieval_latency import chunk_record, scifact_queries, sentences, windows
from core.types import ChunkRecord
from evaluation.datasets import load_dataset
from evaluation.metrics import score_rankings
from retrieval.bm25s_index import Bm25sIndex
from retrieval.keyword import KeywordIndex
from retrieval.tantivy_index import RESCORE_FACTOR, TantivyIndex

INDEX = "bench_v1"
ENGINES: dict[str, Callable[[Path], KeywordIndex]] = {"bm25s": Bm25sIndex, "tantivy": TantivyIndex}
SPLITS = ("test", "train")
CHUNKING = (128, 32)  # the platform's default chunk size / overlap in embedding tokens (core/config.py)
CANDIDATES = 200


def window_records(n: int, seed: int) -> list[ChunkRecord]:
    """``bench/retrieval_latency.py``'s chunks: windows of 2-6 consecutive sentences of SciFact abstracts.

    SciFact has about 149k such windows; beyond that (``--chunks 1000000``) the windows repeat as further
    copies of each abstract (``scifact-<id>-copy<k>``), so term statistics keep their shape at any size.
    """
    rows = scifact_corpus()
    split = [sentences(r["text"]) for r in rows]
    distinct = sum(max(0, len(s) - size + 1) for s in split for size in range(2, 7))
    picked = windows(split, min(n, distinct), seed)
    per_document: dict[str, int] = {}
    records = []
    for copy in range(-(-n // len(picked))):
        for a, start, size in picked[: n - len(records)]:
            document = f"scifact-{rows[a]['_id']}" + (f"-copy{copy}" if copy else "")
            ordinal = per_document[document] = per_document.get(document, -1) + 1
            records.append(chunk_record(document, ordinal, " ".join(split[a][start : start + size])))
    return records


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``action`` (CPU: every thread of this process, so merge threads count)."""
    cpu = time.process_time()
    with stopwatch() as wall:
        action()
    return wall[0], time.process_time() - cpu


def make_engine(engine: str, folder: Path, depth: int | None) -> KeywordIndex:
    """The engine on ``folder``; ``depth``: how many of its best matches tantivy re-scores (None: its default)."""
    return TantivyIndex(folder, rescore_depth=depth) if engine == "tantivy" else ENGINES[engine](folder)


def measure_engine(
    engine: str, n: int, seed: int, queries: Sequence[str], warmup: int, trials: int, depth: int | None
) -> dict:
    """Everything timed for one engine; runs in its own process (RSS and caches are this engine's only)."""
    records = window_records(n, seed)
    work = Path(tempfile.mkdtemp(prefix=f"bench-kw-{engine}-"))
    out: dict[str, Any] = {"rss_before_mb": rss_mb()}
    try:
        index = make_engine(engine, work, depth)
        out["build_s"], out["build_cpu_s"] = timed(lambda: (index.add(INDEX, records), index.search(INDEX, "cell", 1)))
        for query in queries[:warmup]:
            index.search(INDEX, query, CANDIDATES)
        latencies = []
        for query in queries:
            with stopwatch() as elapsed:
                index.search(INDEX, query, CANDIDATES)
            latencies.append(elapsed[0] * 1000)
        out["query_ms"] = summary_ms(latencies)
        texts = [r.text for r in records[:3]]
        adds, deletes = [], []
        for trial in range(trials):
            new = [chunk_record(f"bench-added-{trial}", i, text) for i, text in enumerate(texts)]
            # Searchable = the write returned and a query sees it (bm25s may rebuild in either step).
            adds.append(timed(lambda new=new: (index.add(INDEX, new), index.search(INDEX, queries[0], CANDIDATES))))
            deletes.append(
                timed(
                    lambda t=trial: (index.delete_document(INDEX, f"bench-added-{t}"), index.search(INDEX, "cell", 1))
                )
            )
        out["add_s"], out["add_cpu_s"] = (float(np.median([a[i] for a in adds])) for i in (0, 1))
        out["delete_s"], out["delete_cpu_s"] = (float(np.median([d[i] for d in deletes])) for i in (0, 1))
        out["count"] = index.count(INDEX)
        out["rss_mb"], out["peak_rss_mb"] = rss_mb(), peak_rss_mb()
        index.close()
        out["disk_mb"] = folder_mb(work)
        with stopwatch() as reopen:
            make_engine(engine, work, depth).search(INDEX, queries[0], CANDIDATES)
        out["reopen_s"] = reopen[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


Scored = list[tuple[int, float]]


def keyword_lists(
    engine: str, texts: Sequence[str], owner: Sequence[int], queries: Sequence[str], depth: int | None
) -> list[Scored]:
    """Each query's top ``CANDIDATES`` rows of ``texts`` through the engine itself (ids are row numbers)."""
    records = [
        ChunkRecord(id=str(row), text=t, payload={"document_id": str(owner[row])}) for row, t in enumerate(texts)
    ]
    with tempfile.TemporaryDirectory(prefix=f"bench-kw-q-{engine}-") as folder:
        index = make_engine(engine, Path(folder), depth)
        index.add(INDEX, records)
        lists = [[(int(h.id), h.score) for h in index.search(INDEX, q, CANDIDATES)] for q in queries]
        index.close()
    return lists


def quality(engines: Sequence[str], hybrid: bool, threads: int, depth: int | None) -> list[list[Any]]:
    """nDCG@10 per engine, corpus unit, mode and split (the rows of the quality table)."""
    from bench.tune_retrieval import (
        Fusion,
        VectorCache,
        chunk_corpus,
        distinct_uploads,
        make_embedder,
        rank_documents,
        vector_lists,
    )

    datasets = {split: load_dataset(scifact_dir(), split) for split in SPLITS}
    uploads = distinct_uploads(datasets["test"].documents)
    questions = {q.id: q.text for split in SPLITS for q in datasets[split].questions}
    query_ids = list(questions)
    qrels = {split: {q.id: q.qrels for q in datasets[split].questions} for split in SPLITS}
    query_texts = [questions[q] for q in query_ids]

    def ndcg(rankings: list[list[str]], split: str) -> float:
        by_id = dict(zip(query_ids, rankings, strict=True))
        return score_rankings(qrels[split], {q: by_id[q] for q in qrels[split]})[0]["ndcg@10"]

    rows: list[list[Any]] = []
    abstracts = [abstract_text({"title": d.title, "text": d.text}) for d in uploads.documents]
    for engine in engines:
        lists = keyword_lists(engine, abstracts, range(len(abstracts)), query_texts, depth)
        rankings = [[d for row, _ in hits[:100] for d in uploads.dataset_ids[row]] for hits in lists]
        rows.append([engine, "whole abstracts", "keyword", *(ndcg(rankings, s) for s in SPLITS)])

    embedder, encode, label = make_embedder(threads)
    chunks = chunk_corpus(uploads, embedder.count_tokens, *CHUNKING)
    vector: list[Scored] = []
    if hybrid:
        cache = VectorCache(cache_dir("tune_retrieval", label), encode)
        vector = vector_lists(cache.get(query_texts, "query"), cache.get(chunks.texts, "document"), CANDIDATES)
    alone, fused = Fusion("keyword", 0.0, CANDIDATES, "best"), Fusion("convex", 0.55, CANDIDATES, "doc")
    unit = f"chunks {CHUNKING[0]}/{CHUNKING[1]} ({len(chunks.texts):,})"
    for engine in engines:
        lists = keyword_lists(engine, chunks.texts, chunks.upload_of, query_texts, depth)
        modes = [("keyword", alone)] + ([("hybrid", fused)] if hybrid else [])
        for mode, fusion in modes:
            rankings = [
                rank_documents(fusion, vector[row] if vector else [], lists[row], chunks, uploads)
                for row in range(len(query_ids))
            ]
            rows.append([engine, unit, mode, *(ndcg(rankings, s) for s in SPLITS)])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.keyword_engines", description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the one index (default 100k)")
    parser.add_argument("--queries", type=int, default=300, help="SciFact queries timed (300 test, up to 1109)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed queries per engine first")
    parser.add_argument("--trials", type=int, default=3, help="document add/delete repetitions (median kept)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rescore-depth",
        type=int,
        default=None,
        help=f"tantivy's matches re-scored (default {RESCORE_FACTOR} x the hits asked for)",
    )
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES), help="default: all")
    parser.add_argument("--threads", type=int, default=1, help="embedding threads for missing hybrid vectors")
    parser.add_argument("--no-hybrid", action="store_true", help="skip the hybrid quality rows (no embeddings)")
    parser.add_argument("--skip-speed", action="store_true", help="quality only")
    parser.add_argument("--skip-quality", action="store_true", help="speed only")
    args = parser.parse_args(argv)

    report = Report("bench.keyword_engines")
    depth_label = str(args.rescore_depth) if args.rescore_depth is not None else f"{RESCORE_FACTOR} x asked"
    report.start(f"Keyword engines side by side: {', '.join(args.engines)}; {args.chunks:,} chunks for speed")
    queries = scifact_queries(args.queries)
    speed: dict[str, dict[str, Any]] = {}
    if not args.skip_speed:
        spawn = get_context("spawn")
        for engine in args.engines:
            progress(f"{engine}: {args.chunks:,} chunks in a fresh process")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                speed[engine] = pool.submit(
                    measure_engine,
                    engine,
                    args.chunks,
                    args.seed,
                    queries,
                    args.warmup,
                    args.trials,
                    args.rescore_depth,
                ).result()
        print_speed(speed, args.chunks, len(queries))
    if not args.skip_quality:
        progress("quality on SciFact")
        rows = quality(args.engines, not args.no_hybrid, args.threads, args.rescore_depth)
        heading(
            "SciFact nDCG@10 (platform analyzer; both at k1 0.45 / b 0.2: "
            f"tantivy re-scores its best {depth_label} matches)"
        )
        print_table(["engine", "corpus", "mode", *(f"{s} nDCG@10" for s in SPLITS)], rows)
        report.figures["ndcg@10"] = {f"{r[0]} | {r[1]} | {r[2]}": dict(zip(SPLITS, r[3:], strict=True)) for r in rows}
    report.figures["speed"] = speed
    report.extra_facts.append(("load", "2 shared cores; other sessions' tests ran at the same time"))
    report.extra_facts.append(("tantivy re-score depth", depth_label))
    report.finish()


def print_speed(speed: dict[str, dict[str, Any]], n: int, queries: int) -> None:
    heading(f"Speed at {n:,} chunks (each engine in its own fresh process; seconds unless marked)")
    rows = [
        ("bulk build until the first query answers", "build_s"),
        ("  its CPU time", "build_cpu_s"),
        ("one 3-chunk document: add until a query sees it", "add_s"),
        ("  its CPU time", "add_cpu_s"),
        ("delete that document until a query answers", "delete_s"),
        ("  its CPU time", "delete_cpu_s"),
        ("reopen from disk + first top-200 query", "reopen_s"),
        ("RSS after build, queries and writes (MB)", "rss_mb"),
        ("peak RSS (MB)", "peak_rss_mb"),
        ("index on disk (MB)", "disk_mb"),
        ("chunks counted at the end", "count"),
    ]
    table = [
        [f"top-{CANDIDATES} query p50 (ms), {queries} SciFact queries", *(s["query_ms"]["p50"] for s in speed.values())]
    ]
    table.append([f"top-{CANDIDATES} query p95 (ms)", *(s["query_ms"]["p95"] for s in speed.values())])
    table.append([f"top-{CANDIDATES} query p99 (ms)", *(s["query_ms"]["p99"] for s in speed.values())])
    table += [[label, *(s[key] for s in speed.values())] for label, key in rows]
    print_table(["what", *speed], table)
    print(f"  the machine's {os.cpu_count()} cores are shared with other sessions' test runs")


if __name__ == "__main__":
    main()
