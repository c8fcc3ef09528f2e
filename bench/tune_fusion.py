"""Choose the hybrid retriever's fusion defaults on SciFact *train* qrels, then report *test*.

The expensive part, one vector and one keyword search per query on the real stores of an already
ingested collection, runs once at the deepest candidate depth and is cached (pickle); every fusion
setting is then replayed offline with the pure functions of ``retrieval.fusion`` and scored with
``evaluation.metrics`` exactly as the evaluation runner does (top ``RUN_DEPTH`` chunks -> documents).

Swept: weighted RRF (k, vector:keyword weight, candidates per search) and the convex combination of
min-max normalized scores (vector weight ``w``, keyword ``1 - w``), each with two ways of turning chunk
hits into a document ranking: ``best`` (a document ranks at its best chunk: what the platform does) and
``top2`` (a document scores the sum of its two best fused chunk scores). The setting is chosen on
train only; test is printed for it, for each search alone, for the current default, and for every
setting that reaches the target on test (with its train score, so nobody picks on test).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pickle
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import Report, heading, print_table, progress, scifact_dir, tuning_cells
from core.config import Settings
from core.models import index_name
from evaluation.datasets import load_dataset
from evaluation.metrics import RUN_DEPTH, score_rankings
from retrieval.fusion import convex, rrf
from runtime.services import Services

Scored = list[tuple[str, float]]
SPLITS = ("train", "test")
RRF_K = (5, 10, 20, 40, 60, 100)
WEIGHTS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
DEPTHS = (20, 50, 100, 200)
CONVEX_W = tuple(round(i / 20, 2) for i in range(21))
AGGREGATIONS = ("best", "top2")
DEFAULT = ("rrf", 60, 1.0, 1.0, 100, "best")
TARGET = 0.73


@dataclass(frozen=True)
class Setting:
    fusion: str
    """``rrf``, ``convex``, ``vector`` or ``keyword`` (one search alone)."""
    k: int
    vector_weight: float
    keyword_weight: float
    depth: int
    aggregation: str

    def label(self) -> str:
        if self.fusion in ("vector", "keyword"):
            return f"{self.fusion} alone (top {self.depth})"
        if self.fusion == "convex":
            return f"convex w_vec={self.vector_weight:g} depth={self.depth} agg={self.aggregation}"
        weights = f"{self.vector_weight:g}:{self.keyword_weight:g}"
        return f"rrf k={self.k} vec:kw={weights} depth={self.depth} agg={self.aggregation}"


def chunk_to_datasets(data_dir: Path, collection: str) -> dict[str, list[str]]:
    """Chunk id -> the dataset ids its document stands for (identical uploads dedupe into one document)."""
    by_sha: dict[str, list[str]] = defaultdict(list)
    for document in load_dataset(scifact_dir(), "test").documents:
        by_sha[hashlib.sha256(document.upload_text().encode("utf-8")).hexdigest()].append(document.id)
    with sqlite3.connect(data_dir / "rag.db") as db:
        rows = db.execute(
            "SELECT c.id, d.sha256, d.metadata FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN collections k ON k.id = d.collection_id WHERE k.name = ? AND c.index_version = k.index_version",
            (collection,),
        ).fetchall()
    return {chunk: by_sha.get(sha) or [json.loads(meta)["source_id"]] for chunk, sha, meta in rows}


def collect(data_dir: Path, collection: str, depth: int, cache: Path) -> dict[str, object]:
    """Both searches' scored chunk lists for every train and test query, from the real stores."""
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    settings = Settings(data_dir=data_dir, llm_backend="none", candidates=depth)
    services = Services(settings)
    with sqlite3.connect(data_dir / "rag.db") as db:
        (version,) = db.execute("SELECT index_version FROM collections WHERE name = ?", (collection,)).fetchone()
    index = index_name(collection, version)
    retriever = services.retriever
    questions = {split: load_dataset(scifact_dir(), split).questions for split in SPLITS}
    lists: dict[str, dict[str, Scored]] = {"vector": {}, "keyword": {}}
    queries = {q.id: q.text for qs in questions.values() for q in qs}
    for n, (qid, text) in enumerate(queries.items(), start=1):
        for mode in lists:
            hits = retriever.retrieve(index, text, mode=mode, top_k=depth).hits
            lists[mode][qid] = [(hit.id, hit.score) for hit in hits]
        if n % 100 == 0:
            progress(f"searched {n}/{len(queries)} queries")
    retriever.close()
    data = {
        "lists": lists,
        "qrels": {split: {q.id: q.qrels for q in qs} for split, qs in questions.items()},
        "chunk_to_datasets": chunk_to_datasets(data_dir, collection),
        "depth": depth,
    }
    cache.write_bytes(pickle.dumps(data))
    return data


def fuse(setting: Setting, vector: Scored, keyword: Scored) -> Scored:
    vector, keyword = vector[: setting.depth], keyword[: setting.depth]
    if setting.fusion == "vector":
        return vector
    if setting.fusion == "keyword":
        return keyword
    weights = (setting.vector_weight, setting.keyword_weight)
    if setting.fusion == "convex":
        return convex([vector, keyword], weights=weights)
    return rrf([[c for c, _ in vector], [c for c, _ in keyword]], k=setting.k, weights=weights)


def documents(fused: Scored, chunk_docs: dict[str, list[str]], aggregation: str) -> list[str]:
    """``best``: the platform's rule (top RUN_DEPTH chunks, a document at its best chunk's rank)."""
    if aggregation == "best":
        ranking: dict[str, None] = {}
        for chunk, _ in fused[:RUN_DEPTH]:
            ranking.update(dict.fromkeys(chunk_docs.get(chunk, ())))
        return list(ranking)
    per_doc: dict[str, list[float]] = defaultdict(list)
    for chunk, score in fused:
        for doc in chunk_docs.get(chunk, ()):
            per_doc[doc].append(score)
    totals = {doc: sum(sorted(scores, reverse=True)[:2]) for doc, scores in per_doc.items()}
    return sorted(totals, key=lambda doc: -totals[doc])[:RUN_DEPTH]


def evaluate(data: dict, split: str, setting: Setting) -> dict[str, float]:
    lists, chunk_docs = data["lists"], data["chunk_to_datasets"]
    qrels = data["qrels"][split]
    rankings = {
        q: documents(fuse(setting, lists["vector"][q], lists["keyword"][q]), chunk_docs, setting.aggregation)
        for q in qrels
    }
    return score_rankings(qrels, rankings)[0]


def weight_pairs() -> list[tuple[float, float]]:
    """Only the vector:keyword ratio matters to RRF's ranking, so one of the two stays at 1."""
    return list(dict.fromkeys([*((w, 1.0) for w in WEIGHTS), *((1.0, w) for w in WEIGHTS)]))


def grid(max_depth: int) -> list[Setting]:
    depths = [d for d in DEPTHS if d <= max_depth]
    settings = [
        Setting("rrf", k, wv, wk, depth, agg)
        for k, (wv, wk), depth, agg in itertools.product(RRF_K, weight_pairs(), depths, AGGREGATIONS)
    ]
    settings += [
        Setting("convex", 0, w, round(1 - w, 2), depth, agg)
        for w, depth, agg in itertools.product(CONVEX_W, depths, AGGREGATIONS)
    ]
    return settings


def row(setting: Setting, train: dict[str, float], test: dict[str, float]) -> list[str]:
    return [setting.label(), *tuning_cells(train, test)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/tunedata"), help="An ingested RAG_DATA_DIR.")
    parser.add_argument("--collection", default="scifact")
    parser.add_argument("--depth", type=int, default=200, help="Hits cached per search and query.")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tune_fusion_lists.pkl"))
    parser.add_argument("--top", type=int, default=15, help="Best train settings to list.")
    args = parser.parse_args(argv)
    report = Report("bench.tune_fusion")
    report.start(f"Fusion settings on SciFact train, test reported ({args.data_dir})")
    data = collect(args.data_dir, args.collection, args.depth, args.cache)
    train_of: Callable[[Setting], dict[str, float]] = lambda s: evaluate(data, "train", s)  # noqa: E731
    settings = grid(data["depth"])
    progress(f"sweeping {len(settings)} settings on train")
    train = {s: train_of(s) for s in settings}
    ranked = sorted(settings, key=lambda s: -train[s]["ndcg@10"])
    chosen = ranked[0]
    baselines = [
        Setting("keyword", 0, 0, 1, 100, "best"),
        Setting("vector", 0, 1, 0, 100, "best"),
        Setting(*DEFAULT),
    ]
    for s in baselines:
        train[s] = train_of(s)
    headers = ["setting", "train nDCG@10", "test nDCG@10", "test R@10", "test R@100", "test MRR@10"]
    heading("Baselines and the setting chosen on train:")
    print_table(headers, [row(s, train[s], evaluate(data, "test", s)) for s in [*baselines, chosen]])
    heading(f"Best {args.top} settings on train (test shown, not used for choosing):")
    print_table(headers, [row(s, train[s], evaluate(data, "test", s)) for s in ranked[: args.top]])
    progress("scoring every setting on test")
    test = {s: evaluate(data, "test", s)["ndcg@10"] for s in settings}
    reaching = sorted((s for s in settings if test[s] >= TARGET), key=lambda s: -train[s]["ndcg@10"])
    heading(f"{len(reaching)} of {len(settings)} settings reach test nDCG@10 >= {TARGET} (by train score):")
    print_table(
        ["setting", "train nDCG@10", "train rank", "test nDCG@10"],
        [[s.label(), f"{train[s]['ndcg@10']:.4f}", ranked.index(s) + 1, f"{test[s]:.4f}"] for s in reaching[:25]],
    )
    report.figures = {"chosen": chosen.label(), "best_test_ndcg@10_for_reference": max(test.values())}
    print(f"\nbest on test (for reference only): {max(test.values()):.4f}")
    report.finish()


if __name__ == "__main__":
    main()
