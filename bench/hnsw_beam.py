"""Qdrant Edge's HNSW recall@10 against exact search, and the vector search's latency, per search beam (hnsw_ef).

One shard of ``--chunks`` chunks built as ``bench/retrieval_latency.py`` builds its corpus (real SciFact text
windows; each vector the real MiniLM embedding of its abstract plus calibrated noise, so at 1M chunks every
abstract has ~190 noisy copies: a clustered corpus, hard for a graph search), HNSW built in-process with Edge's
defaults. For each beam, the store is opened with ``hnsw_ef`` set and every query searched as the retriever
does (``settings.candidates`` hits with payloads); recall@10 is the share of the exact top 10 (brute force on
the same shard) among the first 10. The platform's beam is ``RAG_EDGE_HNSW_EF_PER_MILLION`` per million points
of the shard (core/config.py).

``--work-dir`` keeps the built shard, and a later run with the same folder skips the build.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.common import Report, heading, print_table, progress, stopwatch, summary_ms
from bench.retrieval_latency import INDEX, build_corpus, scifact_queries
from core.config import Settings
from retrieval.embedding import Embedder
from retrieval.qdrant_edge import QdrantEdgeStore

TARGET_RECALL = 0.98
BEAMS = (0, 256, 400, 600, 800, 1000, 1500)
"""0: no beam asked for (Qdrant's default, never narrower than the candidates)."""


def build(folder: Path, embedder: Embedder, chunks: int, seed: int, calibration: int) -> list[tuple[str, float]]:
    corpus = build_corpus(embedder, chunks, seed, calibration)
    store = QdrantEdgeStore(folder, optimize_idle_s=3600, optimize_max_delay_s=3600)
    try:
        store.create(INDEX, corpus.vectors.shape[1])
        with stopwatch() as upsert:
            store.bulk_upsert(INDEX, corpus.records, corpus.vectors)
        progress("upserted; building HNSW")
        with stopwatch() as optimize:
            store.optimize(INDEX)
    finally:
        store.close()
    return [("bulk_upsert", upsert[0]), ("optimize (HNSW build)", optimize[0])]


def measure(
    folder: Path, beam: int, points: int, vectors: list[np.ndarray], exact: list[list[str]], candidates: int
) -> dict:
    per_million = -(-beam * 1_000_000 // points)  # the store's setting that gives this beam at this size
    store = QdrantEdgeStore(folder, optimize_idle_s=3600, optimize_max_delay_s=3600, hnsw_ef_per_million=per_million)
    try:
        for vector in vectors[:20]:
            store.search(INDEX, vector, candidates)
        latencies, shares = [], []
        for vector, top in zip(vectors, exact, strict=True):
            with stopwatch() as elapsed:
                hits = store.search(INDEX, vector, candidates)
            latencies.append(elapsed[0] * 1000)
            shares.append(len({h.id for h in hits[:10]} & set(top)) / len(top))
    finally:
        store.close()
    return {"recall": float(np.mean(shares)), "search": summary_ms(latencies)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.hnsw_beam", description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000, help="chunks in the shard (default 1M)")
    parser.add_argument("--queries", type=int, default=300, help="SciFact queries (300 test, up to 1109)")
    parser.add_argument("--beams", type=int, nargs="+", default=list(BEAMS), help="hnsw_ef values; 0 = unset")
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", type=Path, default=None, help="keeps the shard for later runs (temp dir)")
    args = parser.parse_args(argv)

    report = Report("bench.hnsw_beam")
    report.start(f"HNSW recall@10 and vector search latency per beam, {args.chunks:,} chunks in one Edge shard")
    settings = Settings(embedding_device="cpu")
    embedder = Embedder.from_settings(settings)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-hnsw-beam-"))
    folder = work / f"edge-{args.chunks}-{args.seed}"
    if (folder / INDEX).is_dir():
        progress(f"reusing the shard in {folder}")
        builds: list[tuple[str, float]] = []
    else:
        builds = build(folder, embedder, args.chunks, args.seed, args.calibration)
    vectors = [embedder.embed_query(q) for q in scifact_queries(args.queries)]
    store = QdrantEdgeStore(folder, optimize_idle_s=3600, optimize_max_delay_s=3600)
    try:
        exact = [[h.id for h in store.search(INDEX, v, 10, exact=True)] for v in vectors]
    finally:
        store.close()
    progress("exact top 10 of every query taken")

    rows = []
    for beam in args.beams:
        measured = measure(folder, beam, args.chunks, vectors, exact, settings.candidates)
        report.figures[str(beam)] = measured
        search = measured["search"]
        rows.append(
            [
                beam or f"unset (>= {settings.candidates})",
                f"{measured['recall']:.4f}",
                "pass" if measured["recall"] >= TARGET_RECALL else "FAIL",
                search["p50"],
                search["p95"],
                "default" if beam == args.chunks * settings.edge_hnsw_ef_per_million // 1_000_000 else "",
            ]
        )
        progress(f"beam {beam}: recall@10 {measured['recall']:.4f}")
    heading(
        f"Per beam: recall@10 vs exact (target >= {TARGET_RECALL}), vector search of {settings.candidates} hits "
        "with payloads (ms)"
    )
    print_table(["hnsw_ef", "recall@10", "verdict", "p50", "p95", ""], rows)
    if builds:
        heading("Build (seconds)")
        print_table(["step", "s"], builds)
    report.finish()


if __name__ == "__main__":
    main()
