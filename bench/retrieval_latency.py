"""Retrieval-only query latency at 100k chunks in one collection, embedded defaults vs the alternatives.

What is timed per query is ``HybridRetriever.retrieve(mode="hybrid", top_k=10)`` on the real stores:
embedding the SciFact query with the bundled MiniLM (the configured backend), Qdrant Edge HNSW and tantivy
top-``candidates`` each (the keyword search in a second thread meanwhile), the configured fusion.
No generation, no HTTP. In the same run and on the same corpus and queries, the same retriever with
bm25s in place of tantivy (restart and one-document add / delete too), both engines with the keyword search
threaded the other way (``RAG_KEYWORD_SEARCH_THREAD``), and unless
``--skip-alternatives``, with rank-bm25 in place of tantivy and with qdrant-client local mode in place of
Qdrant Edge, one configuration after the other (interleaving them stalled torch behind local mode's BLAS
threads).

Embedding 100k chunks for real takes over an hour on 2 cores, so the corpus is built from real text
cheaply: every chunk is a window of 1-6 consecutive sentences of one SciFact abstract (the real
text both indexes see), and its vector is the real MiniLM embedding of that abstract plus Gaussian
noise, calibrated so that a chunk's cosine to its abstract matches the one measured on real window
embeddings of a sample. The abstract embeddings are computed once and cached under bench/.cache.
SciFact has about 149k such windows; beyond that (``--chunks 1000000``) they repeat as further copies of
each abstract (``scifact-<id>-copy<k>``), each copy with its own noise.

Last, Qdrant Edge's memory configurations side by side (``bench/edge_memory.py``): float32 vectors in
RAM, an int8 copy in RAM with rescoring, float32 on disk (the default), both; for each, retrieve()
p50/p95, HNSW recall@10 against exact search on the same shard, RSS of a process serving it, size on disk.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import edge_memory
from bench.common import (
    Report,
    abstract_text,
    cached_vectors,
    heading,
    print_table,
    progress,
    rss_mb,
    scifact_corpus,
    scifact_dir,
    stopwatch,
    summary_ms,
    verdict,
)
from core.config import Settings
from core.types import ChunkRecord
from retrieval.bm25s_index import Bm25sIndex
from retrieval.document_field import document_index, document_records
from retrieval.embedding import Embedder
from retrieval.qdrant_edge import QdrantEdgeStore
from retrieval.qdrant_server import QdrantServerStore
from retrieval.rank_bm25_index import RankBm25Index
from retrieval.retriever import HybridRetriever
from retrieval.tantivy_index import TantivyIndex

INDEX = "bench_v1"
DEFAULT = "Edge HNSW + tantivy (default)"
CHUNKS_ONLY = "Edge HNSW + tantivy, chunks only (no document field)"
BM25S = "Edge HNSW + bm25s"
"""The keyword engine that was the default before tantivy: a score matrix, fast to search, rebuilt on writes."""
RANK_BM25 = "Edge HNSW + rank-bm25"
OTHER_THREADING = ", keyword search {} (RAG_KEYWORD_SEARCH_THREAD={})"
"""Suffix of the configurations that search keywords the other way than the default does."""
LOCAL = "qdrant-client local + tantivy"
TARGET_P50_MS = 25.0
TARGET_P95_MS = 50.0
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_UPLOADED_AT = 1_750_000_000.0


@dataclass
class Corpus:
    records: list[ChunkRecord]
    vectors: np.ndarray
    facts: list[tuple[str, str]]


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def windows(abstracts: Sequence[list[str]], n: int, seed: int) -> list[tuple[int, int, int]]:
    """``n`` distinct (abstract, first sentence, length) windows, 2-6 sentences long where enough exist."""
    for lengths in (range(2, 7), range(1, 1000)):
        every = [
            (a, start, size)
            for a, sents in enumerate(abstracts)
            for size in lengths
            for start in range(len(sents) - size + 1)
        ]
        if len(every) >= n:
            break
    else:
        raise SystemExit(f"SciFact yields {len(every):,} distinct sentence windows; ask for at most that many chunks")
    picked = np.random.default_rng(seed).choice(len(every), size=n, replace=False)
    return sorted(every[i] for i in picked)


def build_corpus(embedder: Embedder, n: int, seed: int, calibration: int) -> Corpus:
    rows = scifact_corpus()
    abstract_vectors = cached_vectors(
        f"scifact-abstracts-minilm-{embedder.backend}", [abstract_text(r) for r in rows], embedder.embed_documents
    )
    split = [sentences(r["text"]) for r in rows]
    distinct = sum(max(0, len(s) - size + 1) for s in split for size in range(2, 7))
    once = windows(split, min(n, distinct), seed)
    copies = [(copy, window) for copy in range(-(-n // len(once))) for window in once][:n]
    picked = [window for _, window in copies]
    texts = [" ".join(split[a][start : start + size]) for a, start, size in picked]
    parents = np.array([a for a, _, _ in picked])

    rng = np.random.default_rng(seed + 1)
    sample = rng.choice(n, size=min(calibration, n), replace=False)
    real = embedder.embed_documents([texts[i] for i in sample])
    target = float(np.mean(np.sum(real * abstract_vectors[parents[sample]], axis=1)))
    # Isotropic noise of norm sigma is nearly orthogonal to the abstract in 384 dimensions, so the
    # cosine to it is about 1 / sqrt(1 + sigma^2): solve for the measured cosine.
    sigma = float(np.sqrt(1.0 / target**2 - 1.0))
    dim = abstract_vectors.shape[1]
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (sigma / np.sqrt(dim))
    vectors = abstract_vectors[parents] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    achieved = float(np.mean(np.sum(vectors * abstract_vectors[parents], axis=1)))

    per_document: dict[str, int] = {}
    records = []
    for (copy, (a, _, _)), text in zip(copies, texts, strict=True):
        document = f"scifact-{rows[a]['_id']}" + (f"-copy{copy}" if copy else "")
        ordinal = per_document[document] = per_document.get(document, -1) + 1
        records.append(chunk_record(document, ordinal, text))
    tokens = [embedder.count_tokens(texts[i]) for i in sample]
    facts = [
        ("chunks", f"{n:,} windows of 1-6 consecutive sentences of {len(set(parents.tolist())):,} SciFact abstracts"),
        ("chunk tokens (sample)", f"median {np.median(tokens):.0f}, p95 {np.percentile(tokens, 95):.0f}"),
        ("vectors", "real MiniLM embedding of the chunk's abstract + Gaussian noise (configured backend, cached)"),
        ("calibration", f"{len(sample)} windows embedded for real: cosine to their abstract {target:.3f}"),
        ("noise", f"sigma {sigma:.3f}: synthetic chunks' cosine to their abstract {achieved:.3f}"),
    ]
    return Corpus(records, vectors, facts)


def chunk_record(document_id: str, ordinal: int, text: str) -> ChunkRecord:
    """The payload the ingest pipeline writes, so payload sizes (returned with every hit) are real."""
    from core.ids import chunk_id

    return ChunkRecord(
        id=chunk_id(document_id, ordinal),
        text=text,
        payload={
            "document_id": document_id,
            "filename": f"{document_id}.txt",
            "page": None,
            "ordinal": ordinal,
            "heading": None,
            "tags": [],
            "uploaded_at": _UPLOADED_AT,
            "text": text,
        },
    )


def scifact_queries(n: int) -> list[str]:
    """The 300 test queries first (those with judgements), then the rest of queries.jsonl."""
    folder = scifact_dir()
    with (folder / "qrels" / "test.tsv").open() as lines:
        test = {line.split("\t")[0] for line in list(lines)[1:]}
    with (folder / "queries.jsonl").open() as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    ordered = [r["text"] for r in rows if r["_id"] in test] + [r["text"] for r in rows if r["_id"] not in test]
    return ordered[:n]


def timed_queries(
    configs: dict[str, HybridRetriever], queries: Sequence[str], top_k: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]], dict[str, list[dict[str, list[str]]]]]:
    """Every query through each configuration in turn, the default first, each after its own warm-up.

    Not interleaved: qdrant-client local mode's brute-force numpy search leaves BLAS threads spinning,
    which stalled the next torch query embedding to ~500 ms when the configurations alternated per query.

    The warm-up defaults to one untimed pass of every timed query: right after a build the index files are
    not all in the page cache (at 1M chunks the shard alone is over 1.5 GB), and a short warm-up times page
    faults, not the engines. What is timed is a serving process's steady state; the restart table times the
    cold first query.
    """
    totals: dict[str, list[float]] = {name: [] for name in configs}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in configs}
    ids: dict[str, list[dict[str, list[str]]]] = {name: [] for name in configs}
    for name, retriever in configs.items():
        for query in queries[max(0, len(queries) - warmup) :]:
            retriever.retrieve(INDEX, query, top_k=top_k)
        for query in queries:
            with stopwatch() as elapsed:
                result = retriever.retrieve(INDEX, query, mode="hybrid", top_k=top_k)
            totals[name].append(elapsed[0] * 1000)
            for stage, ms in result.timings_ms.items():
                stages[name].setdefault(stage, []).append(ms)
            ids[name].append({s: [h.id for h in hits[:top_k]] for s, hits in result.stages.items()})
        progress(f"{name}: {len(queries)} queries timed")
    return totals, stages, ids


def overlap(a: list[dict[str, list[str]]], b: list[dict[str, list[str]]], stage: str) -> float:
    """Mean share of ``a``'s top-k ids for ``stage`` that ``b`` also returned."""
    shares = [len(set(x[stage]) & set(y[stage])) / len(x[stage]) for x, y in zip(a, b, strict=True) if x[stage]]
    return float(np.mean(shares)) if shares else float("nan")


def incremental(retriever: HybridRetriever, corpus: Corpus, trials: int, query: str) -> list[dict[str, float]]:
    """Add then delete one new 3-chunk document at full size; the first query after each pays the rebuild."""
    texts = [r.text for r in corpus.records[:3]]
    results = []
    for trial in range(trials):
        records = [chunk_record(f"bench-added-{trial}", i, text) for i, text in enumerate(texts)]
        row: dict[str, float] = {}
        with stopwatch() as t:
            vectors = retriever.embedder.embed_documents(texts)
        row["embed 3 chunks"] = t[0]
        with stopwatch() as t:
            retriever.vectors.upsert(INDEX, records, vectors)
        row["Edge upsert (HNSW later, in the background)"] = t[0]
        engine = retriever.keywords.name
        with stopwatch() as t:
            retriever.keywords.add(INDEX, records)
            retriever.keywords.add(document_index(INDEX), document_records(records))
        row[f"{engine} add (chunk and document rows)"] = t[0]
        with stopwatch() as t:
            retriever.retrieve(INDEX, query, top_k=10)
        row["first query after add"] = t[0]
        with stopwatch() as t:
            retriever.vectors.delete_document(INDEX, records[0].payload["document_id"])
        row["Edge delete document"] = t[0]
        with stopwatch() as t:
            for keyword_index in (INDEX, document_index(INDEX)):
                retriever.keywords.delete_document(keyword_index, records[0].payload["document_id"])
        row[f"{engine} delete document (chunk and document rows)"] = t[0]
        with stopwatch() as t:
            retriever.retrieve(INDEX, query, top_k=10)
        row["first query after delete"] = t[0]
        with stopwatch() as t:
            retriever.retrieve(INDEX, query, top_k=10)
        row["next query (steady)"] = t[0]
        results.append(row)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.retrieval_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the one collection (default 100k)")
    parser.add_argument("--queries", type=int, default=300, help="SciFact queries timed (300 test, up to 1109)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed queries per configuration first (default: every timed query once; see timed_queries)",
    )
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3, help="incremental add/delete repetitions")
    parser.add_argument("--calibration", type=int, default=64, help="windows embedded for real to calibrate noise")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the indexes are built (temp dir)")
    parser.add_argument(
        "--local-dir",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="parent of qdrant-client's folder: it commits to SQLite per point (an fsync each), so tmpfs by default",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads for the query embedding (default: cores)",
    )
    parser.add_argument("--skip-alternatives", action="store_true", help="only the embedded defaults")
    parser.add_argument(
        "--memory-configs",
        default=",".join(edge_memory.CONFIGS),
        help=f"Edge memory configurations compared last, comma-separated from {','.join(edge_memory.CONFIGS)} "
        "('' for none); each builds its own shard",
    )
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = args.queries
    if args.memory_worker:
        queries = scifact_queries(args.queries)
        edge_memory.worker(args.memory_worker, queries, args.top_k, args.warmup, args.torch_threads)
        return
    memory_configs = [k for k in args.memory_configs.split(",") if k]
    if unknown := set(memory_configs) - set(edge_memory.CONFIGS):
        parser.error(f"unknown memory configurations: {sorted(unknown)}")

    report = Report("bench.retrieval_latency")
    report.start(f"Retrieval-only latency, hybrid mode, {args.chunks:,} chunks in one collection")
    settings = Settings(embedding_device="cpu")
    embedder = Embedder.from_settings(settings)
    report.extra_facts.append(("embedding backend", embedder.backend))
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    report.extra_facts.append(("torch threads", torch.get_num_threads()))
    with stopwatch() as t_corpus:
        corpus = build_corpus(embedder, args.chunks, args.seed, args.calibration)
    queries = scifact_queries(args.queries)
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-", dir=args.work_dir))
    progress(f"building indexes under {work}")
    try:
        run(args, report, settings, embedder, corpus, queries, work, t_corpus[0])
        if memory_configs:
            compare_memory(args, report, corpus, work, memory_configs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.finish()


def run(
    args: argparse.Namespace,
    report: Report,
    settings: Settings,
    embedder: Embedder,
    corpus: Corpus,
    queries: list[str],
    work: Path,
    corpus_s: float,
) -> None:
    records, vectors = corpus.records, corpus.vectors
    builds: list[tuple[str, float]] = [("corpus prepared (sentence windows, cached vectors, calibration)", corpus_s)]
    bm25 = Bm25sIndex(work / "keyword")
    with stopwatch() as t:
        bm25.add(INDEX, records)
    builds.append(("bm25s from scratch: tokenize + write corpus", t[0]))
    with stopwatch() as t:
        bm25.search(INDEX, "warm up", 1)
    builds.append(("bm25s from scratch: score matrix (built + saved on first query)", t[0]))
    with stopwatch() as t:
        bm25.add(document_index(INDEX), document_records(records))
        bm25.search(document_index(INDEX), "warm up", 1)
    builds.append(("bm25s document rows (retrieval.document_field): write + score matrix", t[0]))
    progress("bm25s built")
    tantivy = TantivyIndex(work / "tantivy")
    with stopwatch() as t:
        tantivy.add(INDEX, records)
        tantivy.add(document_index(INDEX), document_records(records))
        tantivy.search(INDEX, "warm up", 1)
    builds.append(("tantivy from scratch: chunk and document rows, until the first query", t[0]))
    progress("tantivy built")

    edge = QdrantEdgeStore(work / "edge", hnsw_ef_per_million=settings.edge_hnsw_ef_per_million)
    edge.create(INDEX, vectors.shape[1])
    with stopwatch() as t:
        edge.bulk_upsert(INDEX, records, vectors)
    builds.append(("Qdrant Edge bulk_upsert (no index)", t[0]))
    progress("Edge upserted; optimize() (HNSW build) blocks for a while")
    with stopwatch() as t:
        edge.optimize(INDEX)
    builds.append(("Qdrant Edge optimize (HNSW build)", t[0]))

    def retriever(vectors_store: object, keywords: object, tuned: Settings = settings) -> HybridRetriever:
        return HybridRetriever.tuned(tuned, embedder, vectors_store, keywords)  # type: ignore[arg-type]

    default = DEFAULT
    configs = {default: retriever(edge, tantivy)}
    if settings.keyword_document_weight:
        chunks_only = settings.model_copy(update={"keyword_document_weight": 0.0})
        configs[CHUNKS_ONLY] = retriever(edge, tantivy, chunks_only)
    configs[BM25S] = retriever(edge, bm25)
    other = not settings.keyword_search_thread
    threading = settings.model_copy(update={"keyword_search_thread": other})
    suffix = OTHER_THREADING.format("in a second thread" if other else "in the query's thread", str(other).lower())
    configs[DEFAULT.removesuffix(" (default)") + suffix] = retriever(edge, tantivy, threading)
    configs[BM25S + suffix] = retriever(edge, bm25, threading)
    local = None
    if not args.skip_alternatives:
        from qdrant_client import QdrantClient

        progress("qdrant-client local mode upsert")
        local_dir = Path(tempfile.mkdtemp(prefix="bench-local-", dir=args.local_dir))
        local = QdrantServerStore(client=QdrantClient(path=str(local_dir)))
        local.create(INDEX, vectors.shape[1])
        with stopwatch() as t:
            local.upsert(INDEX, records, vectors)
        builds.append((f"qdrant-client local mode upsert (folder in {args.local_dir or 'temp dir'})", t[0]))
        rank = RankBm25Index(work / "keyword")  # reads the same corpus files as bm25s
        with stopwatch() as t:
            rank.search(INDEX, "warm up", 1)
        builds.append(("rank-bm25 scorer (from the stored term ids)", t[0]))
        configs[RANK_BM25] = retriever(edge, rank)
        configs[LOCAL] = retriever(local, tantivy)
    builds.append((f"process RSS after building (MB): {rss_mb():,.0f}", float("nan")))

    progress(f"timing {len(queries)} queries x {len(configs)} configurations, one after the other")
    totals, stages, ids = timed_queries(configs, queries, args.top_k, args.warmup)

    if local is not None:
        local.close()
        shutil.rmtree(local_dir, ignore_errors=True)
    edge.close()
    reopen: list[tuple[str, float]] = []
    with stopwatch() as t:
        bm25 = Bm25sIndex(work / "keyword")
        bm25.search(INDEX, queries[0], 10)
    reopen.append(("bm25s reopen from disk (corpus + cached matrix) + first query", t[0]))
    with stopwatch() as t:
        tantivy = TantivyIndex(work / "tantivy")
        tantivy.search(INDEX, queries[0], 10)
        tantivy.search(document_index(INDEX), queries[0], 10)
    reopen.append(("tantivy reopen from disk + first query (chunk and document rows)", t[0]))
    with stopwatch() as t:
        edge = QdrantEdgeStore(work / "edge", hnsw_ef_per_million=settings.edge_hnsw_ef_per_million)
        edge.search(INDEX, embedder.embed_query(queries[0]), 10)
    reopen.append(("Qdrant Edge reopen + first query", t[0]))
    progress("incremental add/delete")
    changes = incremental(retriever(edge, bm25), corpus, args.trials, queries[0])
    changes = [
        {**bm25s_row, **{key: value for key, value in tantivy_row.items() if key.startswith("tantivy")}}
        for bm25s_row, tantivy_row in zip(
            changes, incremental(retriever(edge, tantivy), corpus, args.trials, queries[0]), strict=True
        )
    ]
    edge.close()

    heading(f"Corpus ({len(records):,} chunks)")
    print_table(["what", "how"], corpus.facts)
    print(
        f"\nQueries: {len(queries)} real SciFact queries, embedded at query time; "
        f"hybrid, candidates {settings.candidates} per side, {settings.fusion} fusion by {settings.fusion_unit}, "
        f"top_k {args.top_k}, "
        f"{args.warmup} warm-up queries per configuration; configurations run one after the other, default first"
    )
    heading("End-to-end retrieve() latency (ms)")
    print_table(
        ["configuration", "p50", "p95", "p99", "mean", "max"],
        [[name, *(summary_ms(v)[k] for k in ("p50", "p95", "p99", "mean", "max"))] for name, v in totals.items()],
    )
    base = summary_ms(totals[default])
    heading(f"Targets ({default})")
    print_table(
        ["target", "measured", "verdict"],
        [
            [f"p50 <= {TARGET_P50_MS:g} ms", f"{base['p50']:.1f} ms", verdict(base["p50"], TARGET_P50_MS)],
            [f"p95 <= {TARGET_P95_MS:g} ms", f"{base['p95']:.1f} ms", verdict(base["p95"], TARGET_P95_MS)],
        ],
    )
    heading("Per stage (ms), p50 / p95")
    stage_names = ["embed", "vector", "keyword", "fuse", "payloads"]
    print_table(
        ["configuration", *stage_names],
        [
            [
                name,
                *(
                    f"{summary_ms(s.get(st, []))['p50']:.2f} / {summary_ms(s.get(st, []))['p95']:.2f}"
                    for st in stage_names
                ),
            ]
            for name, s in stages.items()
        ],
    )
    if len(configs) > 1:
        print_ratios(default, totals, stages, ids)
    heading("Build (seconds)")
    print_table(["step", "s"], builds)
    heading(f"Restart (seconds, {len(records):,} chunks)")
    print_table(["step", "s"], reopen)
    print(
        f"\nIncremental change of one 3-chunk document at {len(records):,} chunks (seconds; median / max of "
        f"{len(changes)})"
    )
    print_table(
        ["step", "median", "max"],
        [[k, float(np.median([c[k] for c in changes])), max(c[k] for c in changes)] for k in changes[0]],
    )


def compare_memory(args: argparse.Namespace, report: Report, corpus: Corpus, work: Path, keys: list[str]) -> None:
    query_options = ["--queries", str(args.queries), "--warmup", str(args.warmup), "--top-k", str(args.top_k)]
    if args.torch_threads:
        query_options += ["--torch-threads", str(args.torch_threads)]
    results = edge_memory.run_all(work, keys, corpus.records, corpus.vectors, query_options)
    heading(
        f"Qdrant Edge memory configurations, {len(corpus.records):,} chunks (each served by a fresh process; "
        "retrieve() and vector stage in ms)"
    )
    print_table(edge_memory.HEADERS, edge_memory.table_rows(results))
    print("  RSS: the serving process after the timed queries (embedder, tantivy and the shard); in brackets its")
    print("  file-backed share, memory-mapped pages the OS can evict. shard's RSS: growth from opening the shard")
    print("  and querying it. recall@10: HNSW top 10 (searched at the retriever's candidate count) vs exact search")
    print("  on the same shard. on disk: allocated blocks of the shard folder, WAL included.")
    report.figures["edge_memory"] = results


def print_ratios(
    default: str,
    totals: dict[str, list[float]],
    stages: dict[str, dict[str, list[float]]],
    ids: dict[str, list[dict[str, list[str]]]],
) -> None:
    rows = []
    alternatives = (
        (CHUNKS_ONLY, "keyword"),
        (BM25S, "keyword"),
        (RANK_BM25, "keyword"),
        (LOCAL, "vector"),
    )
    for name, stage in alternatives:
        if name not in totals:
            continue
        ours, theirs = summary_ms(stages[default][stage]), summary_ms(stages[name][stage])
        total_ours, total_theirs = summary_ms(totals[default]), summary_ms(totals[name])
        rows.append(
            [
                f"{name} vs default",
                stage,
                f"{theirs['p50']:.2f} / {ours['p50']:.2f} = {theirs['p50'] / ours['p50']:.1f}x",
                f"{theirs['p95']:.2f} / {ours['p95']:.2f} = {theirs['p95'] / ours['p95']:.1f}x",
                f"{total_theirs['p50'] / total_ours['p50']:.1f}x",
                f"{overlap(ids[name], ids[default], stage):.3f}",
            ]
        )
    heading("Side by side (same corpus, same queries, same run)")
    print_table(["comparison", "stage", "stage p50 (ms)", "stage p95 (ms)", "total p50", "top-k overlap"], rows)
    print("  top-k overlap: share of the alternative's stage top-k that the default also returned; local mode is")
    print("  an exact (brute-force) search, so for the vector stage it is the recall@k of Edge's HNSW.")


if __name__ == "__main__":
    main()
