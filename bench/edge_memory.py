"""Qdrant Edge memory configurations for ``bench.retrieval_latency``, each measured in fresh processes.

One process builds a configuration's shard (``bulk_upsert`` + ``optimize``) from the corpus the parent
pickled; a second one opens it as a restarted server would, with the embedder and the parent's tantivy
index, and times ``retrieve()``. RSS is that second process's, so the build's transient memory and the
other configurations' shards are not in it. Recall@10: the store's HNSW search at the retriever's
candidate count, top 10, against ``search(exact=True)`` on the same shard (brute force on the float32
vectors), run after the timed queries and the RSS reading because it reads every vector.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import progress, stopwatch, summary_ms
from core.config import Settings
from retrieval.qdrant_edge import QdrantEdgeStore

INDEX = "bench_v1"
CONFIGS: dict[str, dict[str, Any]] = {
    "ram": {"edge_quantization": "none", "edge_vectors_on_disk": False},
    "int8": {"edge_quantization": "int8", "edge_vectors_on_disk": False},
    "disk": {"edge_quantization": "none", "edge_vectors_on_disk": True},
    "int8-disk": {"edge_quantization": "int8", "edge_vectors_on_disk": True},
}
LABELS = {
    "ram": "float32 in RAM",
    "int8": "int8 in RAM + rescore on float32",
    "disk": "float32 on disk (cold mmap, default)",
    "int8-disk": "int8 in RAM + rescore, float32 on disk",
}


def memory_status() -> dict[str, float]:
    """RSS now and its file-backed share (memory-mapped pages the OS may evict), MB."""
    fields = {"VmRSS": "rss", "RssFile": "file", "VmHWM": "peak"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in fields:
            out[fields[key]] = int(line.split()[1]) / 1024
    return out


def allocated_mb(path: Path) -> float:
    """Disk blocks actually used (Edge preallocates sparse files, so apparent sizes overstate)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 1e6


def store_for(work: Path, key: str) -> QdrantEdgeStore:
    options = CONFIGS[key]
    return QdrantEdgeStore(
        work / f"edge-{key}",
        quantization=options["edge_quantization"],
        vectors_on_disk=options["edge_vectors_on_disk"],
        hnsw_ef_per_million=Settings.model_fields["edge_hnsw_ef_per_million"].default,
    )


def build(work: Path, key: str) -> dict[str, float]:
    with (work / "corpus.pkl").open("rb") as f:
        records, vectors = pickle.load(f)
    store = store_for(work, key)
    store.create(INDEX, vectors.shape[1])
    with stopwatch() as upsert:
        store.bulk_upsert(INDEX, records, vectors)
    with stopwatch() as optimize:
        store.optimize(INDEX)
    store.close()
    return {"upsert_s": upsert[0], "optimize_s": optimize[0], "build_peak_rss_mb": memory_status()["peak"]}


def measure(work: Path, key: str, queries: list[str], top_k: int, warmup: int, torch_threads: int | None) -> dict:
    from retrieval.document_field import document_index
    from retrieval.embedding import Embedder
    from retrieval.retriever import HybridRetriever
    from retrieval.tantivy_index import TantivyIndex

    settings = Settings(embedding_device="cpu", **CONFIGS[key])
    embedder = Embedder.from_settings(settings)
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    keywords = TantivyIndex(work / "tantivy")
    keywords.search(INDEX, queries[0], 1)
    keywords.search(document_index(INDEX), queries[0], 1)
    embedder.embed_query(queries[0])
    without_shard = memory_status()
    store = store_for(work, key)
    retriever = HybridRetriever.tuned(settings, embedder, store, keywords)
    for query in queries[max(0, len(queries) - warmup) :]:
        retriever.retrieve(INDEX, query, top_k=top_k)
    totals, vector = [], []
    for query in queries:
        with stopwatch() as elapsed:
            result = retriever.retrieve(INDEX, query, mode="hybrid", top_k=top_k)
        totals.append(elapsed[0] * 1000)
        vector.append(result.timings_ms["vector"])
    served = memory_status()
    shares = []
    for query in queries:
        q = embedder.embed_query(query)
        approx = {h.id for h in store.search(INDEX, q, settings.candidates)[:top_k]}
        exact = [h.id for h in store.search(INDEX, q, top_k, exact=True)]
        shares.append(len(approx & set(exact)) / len(exact))
    store.close()
    return {
        "total": summary_ms(totals),
        "vector": summary_ms(vector),
        "recall": float(np.mean(shares)),
        "rss_mb": served["rss"],
        "rss_file_mb": served["file"],
        "rss_without_shard_mb": without_shard["rss"],
        "disk_mb": allocated_mb(work / f"edge-{key}"),
    }


def run_all(work: Path, keys: list[str], records: list, vectors: np.ndarray, argv: list[str]) -> dict[str, dict]:
    """Each configuration built, then measured, in a process of its own; ``argv``: the query options."""
    with (work / "corpus.pkl").open("wb") as f:
        pickle.dump((records, vectors), f, protocol=pickle.HIGHEST_PROTOCOL)
    results = {}
    for key in keys:
        row: dict = {}
        for phase in ("build", "measure"):
            progress(f"Edge memory configuration {key}: {phase} (own process)")
            out = work / f"memory-{key}-{phase}.json"
            command = [sys.executable, "-m", "bench.retrieval_latency", *argv]
            subprocess.run([*command, "--memory-worker", f"{phase}:{key}:{work}:{out}"], check=True)
            row.update(json.loads(out.read_text()))
        results[key] = row
    (work / "corpus.pkl").unlink()
    return results


def worker(spec: str, queries: list[str], top_k: int, warmup: int, torch_threads: int | None) -> None:
    """``phase:key:work:out``: one phase for one configuration, its figures written as JSON to ``out``."""
    phase, key, work, out = spec.split(":", 3)
    if phase == "build":
        figures = build(Path(work), key)
    else:
        figures = measure(Path(work), key, queries, top_k, warmup, torch_threads)
    Path(out).write_text(json.dumps(figures))


def table_rows(results: dict[str, dict]) -> list[list[Any]]:
    return [
        [
            LABELS[key],
            r["total"]["p50"],
            r["total"]["p95"],
            f"{r['vector']['p50']:.2f} / {r['vector']['p95']:.2f}",
            f"{r['recall']:.4f}",
            f"{r['rss_mb']:,.0f} ({r['rss_file_mb']:,.0f})",
            f"{r['rss_mb'] - r['rss_without_shard_mb']:,.0f}",
            f"{r['disk_mb']:,.0f}",
            f"{r['upsert_s'] + r['optimize_s']:.1f}",
            f"{r['build_peak_rss_mb']:,.0f}",
        ]
        for key, r in results.items()
    ]


HEADERS = [
    "configuration",
    "retrieve p50",
    "p95",
    "vector p50 / p95",
    "recall@10 vs exact",
    "RSS MB (file-backed)",
    "shard's RSS MB",
    "on disk MB",
    "build s",
    "build peak RSS MB",
]
