"""Choose the keyword index, the chunking and the chunk -> document rule on SciFact *train*, then report *test*.

Issue #4 asks for hybrid (vector + BM25) document-level nDCG@10 >= 0.73 on SciFact test with every default
chosen on the train qrels only. ``bench/tune_fusion.py`` tuned the fusion alone on one ingested collection;
this script also moves the levers underneath it, offline and with the platform's own pure functions, so
what it finds transfers to the product as it is:

- chunking: the SciFact abstracts go through the real upload path minus the stores (``upload_text`` ->
  ``detect_kind`` -> the parser -> ``chunk_sections`` sized by the embedder's own token counter ->
  ``embedding_text``, the ``index_text`` both searches match on), at each ``--chunkings`` size/overlap;
- vector side: the platform's ``Embedder`` (``onnx-int8``, the CPU default) on every chunk's index text,
  cached per text hash under bench/.cache/tune_retrieval (configurations sharing chunks embed them once),
  searched by exact cosine in numpy (what the HNSW index approximates, recall@10 0.98);
- keyword side: bm25s over the terms of ``retrieval.text_analysis`` (the analyzer index and queries share),
  each method (lucene, robertson, atire, bm25l, bm25+) and k1/b of a grid, top hits by the index's own
  ``top_positive``;
- fusion (``retrieval.fusion.convex`` / ``rrf``) at each vector weight and candidate depth, and four ways to
  turn chunk hits into a document ranking: ``best`` (a document at its best fused chunk, the platform's
  rule, ``evaluation.metrics.doc_ranking``), ``top2`` / ``sum`` (the sum of a document's two best / all
  fused chunk scores) and ``doc`` (each candidate list collapsed to one hit per document, its best chunk,
  before fusion, so a document's best vector chunk and best keyword chunk add up even when they differ).

Everything is scored by ``evaluation.metrics.score_rankings`` to ``RUN_DEPTH`` exactly as ``ragctl eval`` does.
Choosing happens in two stages per chunking, on train only: (1) every BM25 setting scored alone and in a
few hybrid probes; (2) the best ``--bm25-keep`` of them (plus the current default) through the full fusion
grid. The overall pick is the best train nDCG@10 over all chunkings; test is printed only for it, its
one-lever-away neighbours, the per-chunking winners and each search alone.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, Report, cache_dir, heading, print_table, progress, scifact_dir, tuning_cells
from evaluation.datasets import EvalDocument, load_dataset
from evaluation.metrics import RUN_DEPTH, doc_ranking, score_rankings
from ingest.chunking import chunk_sections
from ingest.parsers import detect_kind, parse_document
from ingest.records import embedding_text
from retrieval.corpus_index import top_positive
from retrieval.fusion import convex, rrf
from retrieval.text_analysis import tokenize, tokenize_many

SPLITS = ("train", "test")
TARGET = 0.73
MAX_DEPTH = 300
"""Hits kept per search and query: the deepest candidate depth swept."""

# Stage 1: the keyword index.
BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
BM25_K1 = (0.3, 0.45, 0.6, 0.9, 1.2, 1.5)
BM25_B = (0.2, 0.4, 0.6, 0.75)
PROBE_WEIGHTS = (0.4, 0.5)
PROBE_AGGREGATIONS = ("best", "doc")
# Stage 2: the fusion around the kept keyword settings.
CONVEX_W = tuple(round(0.25 + i * 0.05, 2) for i in range(11))  # 0.25 .. 0.75
DEPTHS = (50, 100, 200, 300)
AGGREGATIONS = ("best", "top2", "sum", "doc")
RRF_K = (10, 30, 60)
RRF_VECTOR_WEIGHT = (0.6, 1.0, 1.5)  # keyword weight 1
# Today's platform defaults (core/config.py, retrieval/bm25_params.py).
DEFAULT_CHUNKING = (200, 40)
DEFAULT_BM25 = ("lucene", 1.5, 0.75)


@dataclass(frozen=True)
class Bm25:
    method: str
    k1: float
    b: float

    def label(self) -> str:
        return f"{self.method} k1={self.k1:g} b={self.b:g}"


@dataclass(frozen=True)
class Fusion:
    kind: str
    """``convex``, ``rrf``, ``vector`` or ``keyword`` (one search alone)."""
    vector_weight: float
    depth: int
    aggregation: str
    k: int = 0

    def label(self) -> str:
        if self.kind in ("vector", "keyword"):
            return f"{self.kind} alone"
        if self.kind == "convex":
            return f"convex w_vec={self.vector_weight:.2f} depth={self.depth} agg={self.aggregation}"
        return f"rrf k={self.k} vec:kw={self.vector_weight:g}:1 depth={self.depth} agg={self.aggregation}"


@dataclass(frozen=True)
class Setting:
    chunking: tuple[int, int]
    bm25: Bm25
    fusion: Fusion

    def label(self) -> str:
        size, overlap = self.chunking
        chunks = f"chunks {size}/{overlap}"
        if self.fusion.kind == "vector":
            return f"{chunks} | vector alone"
        return f"{chunks} | {self.bm25.label()} | {self.fusion.label()}"


@dataclass
class ChunkSet:
    """Every chunk of the corpus at one chunking: its index text and the upload it belongs to."""

    texts: list[str]
    upload_of: list[int]


@dataclass
class Uploads:
    """Distinct uploads (identical bytes dedupe into one document) and the dataset ids each stands for."""

    documents: list[EvalDocument]
    dataset_ids: list[list[str]]


Scored = list[tuple[int, float]]


def distinct_uploads(documents: Sequence[EvalDocument]) -> Uploads:
    by_sha: dict[str, int] = {}
    uploads = Uploads([], [])
    for document in documents:
        sha = hashlib.sha256(document.upload_text().encode("utf-8")).hexdigest()
        if sha not in by_sha:
            by_sha[sha] = len(uploads.documents)
            uploads.documents.append(document)
            uploads.dataset_ids.append([])
        uploads.dataset_ids[by_sha[sha]].append(document.id)
    return uploads


def chunk_corpus(uploads: Uploads, count_tokens: Callable[[str], int], size: int, overlap: int) -> ChunkSet:
    """The ingest pipeline's parse -> chunk -> ``index_text`` steps, without the stores."""
    chunks = ChunkSet([], [])
    for n, document in enumerate(uploads.documents):
        data = document.upload_text().encode("utf-8")
        parsed = parse_document(data, detect_kind(data, document.filename, None), max_pages=2000)
        for draft in chunk_sections(parsed.sections, count_tokens, size, overlap):
            chunks.texts.append(embedding_text(draft, parsed.title))
            chunks.upload_of.append(n)
    return chunks


class VectorCache:
    """Vectors by sha256 of (purpose, text), in append-only block files, so an interrupted run resumes."""

    BLOCK = 256

    def __init__(self, folder: Path, encode: Callable[[Sequence[str], str], np.ndarray]) -> None:
        self.folder = folder
        self.encode = encode
        self.rows: dict[str, np.ndarray] = {}
        for path in sorted(folder.glob("block-*.npz")):
            with np.load(path) as data:
                self.rows.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
        self.encoded = 0
        self.seconds = 0.0

    @staticmethod
    def key(purpose: str, text: str) -> str:
        return hashlib.sha256(f"{purpose}\x00{text}".encode()).hexdigest()[:32]

    def get(self, texts: Sequence[str], purpose: str) -> np.ndarray:
        keys = [self.key(purpose, t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.rows))
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            progress(f"embedding {len(missing):,} new {purpose} texts (of {len(texts):,}); cached in {self.folder}")
            for start in range(0, len(missing), self.BLOCK):
                block = missing[start : start + self.BLOCK]
                began = time.perf_counter()
                vectors = np.asarray(self.encode([text_of[k] for k in block], purpose), dtype=np.float32)
                self.seconds += time.perf_counter() - began
                self.encoded += len(block)
                name = f"block-{time.time_ns()}.npz"
                np.savez(self.folder / name, keys=np.array(block), vectors=vectors)
                self.rows.update(zip(block, vectors, strict=True))
                done = start + len(block)
                if done % (self.BLOCK * 8) == 0 or done == len(missing):
                    rate = self.encoded / max(self.seconds, 1e-9)
                    progress(f"  {done:,}/{len(missing):,} embedded ({rate:.1f} texts/s)")
        return np.stack([self.rows[k] for k in keys])


def make_embedder(threads: int) -> tuple[Any, Callable[[Sequence[str], str], np.ndarray], str]:
    """The platform's Embedder on ``onnx-int8`` (its CPU default), ONNX file exported into bench/.cache."""
    import torch

    from retrieval.embedding import Embedder

    torch.set_num_threads(threads)  # the Embedder sizes its document session by torch's thread count
    embedder = Embedder(
        "all-MiniLM-L6-v2", device="cpu", batch_size=32, backend="onnx-int8", cache_dir=cache_dir("onnx")
    )
    runtime = embedder.runtime

    def encode(texts: Sequence[str], purpose: str) -> np.ndarray:
        return runtime.encode(list(texts), purpose)

    return embedder, encode, f"minilm-{embedder.backend}"


def vector_lists(queries: np.ndarray, chunks: np.ndarray, depth: int) -> list[Scored]:
    """Exact cosine (vectors are unit length), best first, ``depth`` per query."""
    out: list[Scored] = []
    for start in range(0, len(queries), 128):
        scores = queries[start : start + 128] @ chunks.T
        top = np.argpartition(-scores, depth, axis=1)[:, :depth]
        for row, cand in zip(scores, top, strict=True):
            order = cand[np.lexsort((cand, -row[cand]))]
            out.append([(int(c), float(row[c])) for c in order])
    return out


class KeywordSide:
    """Analyzed chunk terms as vocabulary ids, scored by bm25s at any method / k1 / b."""

    def __init__(self, texts: Sequence[str], query_texts: Sequence[str]) -> None:
        self.vocab: dict[str, int] = {}
        self.terms = [[self.vocab.setdefault(w, len(self.vocab)) for w in words] for words in tokenize_many(texts)]
        self.queries = [[self.vocab[w] for w in tokenize(q) if w in self.vocab] for q in query_texts]

    def lists(self, bm25: Bm25, query_rows: Sequence[int], depth: int) -> dict[int, Scored]:
        import bm25s

        model = bm25s.BM25(k1=bm25.k1, b=bm25.b, method=bm25.method)
        model.index((self.terms, self.vocab), create_empty_token=False, show_progress=False)
        out: dict[int, Scored] = {}
        for q in query_rows:
            ids = self.queries[q]
            if not ids:
                out[q] = []
                continue
            scores = model.get_scores_from_ids(ids)
            out[q] = [(int(r), float(scores[r])) for r in top_positive(scores, depth)]
        return out


def collapse(scored: Scored, upload_of: Sequence[int]) -> Scored:
    """One hit per document, at its best chunk (lists are best first)."""
    seen: set[int] = set()
    out: Scored = []
    for chunk, score in scored:
        doc = upload_of[chunk]
        if doc not in seen:
            seen.add(doc)
            out.append((doc, score))
    return out


def fuse(fusion: Fusion, vector: Scored, keyword: Scored) -> list[tuple[int, float]]:
    if fusion.kind == "vector":
        return vector[:RUN_DEPTH]
    if fusion.kind == "keyword":
        return keyword[:RUN_DEPTH]
    if fusion.kind == "convex":
        return convex([vector, keyword], weights=(fusion.vector_weight, round(1 - fusion.vector_weight, 4)))
    return rrf([[c for c, _ in vector], [c for c, _ in keyword]], k=fusion.k, weights=(fusion.vector_weight, 1.0))


def rank_documents(fusion: Fusion, vector: Scored, keyword: Scored, chunks: ChunkSet, uploads: Uploads) -> list[str]:
    vector, keyword = vector[: fusion.depth], keyword[: fusion.depth]
    upload_of = chunks.upload_of
    if fusion.aggregation == "doc":
        fused = fuse(fusion, collapse(vector, upload_of), collapse(keyword, upload_of))
        return [d for doc, _ in fused[:RUN_DEPTH] for d in uploads.dataset_ids[doc]]
    fused = fuse(fusion, vector, keyword)
    if fusion.aggregation == "best":
        # The platform: the retriever returns the top RUN_DEPTH fused chunks, each document at its best one.
        chunk_ids = [chunk for chunk, _ in fused[:RUN_DEPTH]]
        return doc_ranking(chunk_ids, _ListMap(upload_of), _ListMap(uploads.dataset_ids))
    per_doc: dict[int, list[float]] = defaultdict(list)
    for chunk, score in fused:
        per_doc[upload_of[chunk]].append(score)
    keep = 2 if fusion.aggregation == "top2" else None
    totals = {doc: sum(sorted(scores, reverse=True)[:keep]) for doc, scores in per_doc.items()}
    ranked = sorted(totals, key=lambda doc: -totals[doc])[:RUN_DEPTH]
    return [d for doc in ranked for d in uploads.dataset_ids[doc]]


class _ListMap:
    """A list seen as the Mapping ``doc_ranking`` reads (``get``)."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values

    def get(self, key: int, default: Any = None) -> Any:
        return self.values[key] if 0 <= key < len(self.values) else default


@dataclass
class ChunkingRun:
    """One chunking's chunks, both searches' hit lists per query row, and what scoring needs."""

    chunking: tuple[int, int]
    chunks: ChunkSet
    vector: list[Scored]
    keyword_side: KeywordSide
    keyword: dict[Bm25, dict[int, Scored]]


class Experiment:
    def __init__(self, uploads: Uploads, qrels: dict[str, dict[str, dict[str, int]]], rows: dict[str, int]) -> None:
        self.uploads = uploads
        self.qrels = qrels
        self.row_of = rows
        self.runs: dict[tuple[int, int], ChunkingRun] = {}
        self.scores: dict[tuple[Setting, str], dict[str, float]] = {}

    def keyword_lists(self, run: ChunkingRun, bm25: Bm25) -> dict[int, Scored]:
        if bm25 not in run.keyword:
            run.keyword[bm25] = run.keyword_side.lists(bm25, range(len(self.row_of)), MAX_DEPTH)
        return run.keyword[bm25]

    def evaluate(self, setting: Setting, split: str) -> dict[str, float]:
        cached = self.scores.get((setting, split))
        if cached is not None:
            return cached
        run = self.runs[setting.chunking]
        keyword = self.keyword_lists(run, setting.bm25) if setting.fusion.kind != "vector" else {}
        rankings = {}
        for q in self.qrels[split]:
            row = self.row_of[q]
            rankings[q] = rank_documents(
                setting.fusion, run.vector[row], keyword.get(row, []), run.chunks, self.uploads
            )
        metrics = score_rankings(self.qrels[split], rankings)[0]
        self.scores[(setting, split)] = metrics
        return metrics

    def ndcg(self, setting: Setting, split: str = "train") -> float:
        return self.evaluate(setting, split)["ndcg@10"]


def bm25_grid() -> list[Bm25]:
    return [Bm25(m, k1, b) for m, k1, b in itertools.product(BM25_METHODS, BM25_K1, BM25_B)]


def fusion_grid() -> list[Fusion]:
    grid = [Fusion("convex", w, d, a) for w, d, a in itertools.product(CONVEX_W, DEPTHS, AGGREGATIONS)]
    grid += [Fusion("rrf", w, 100, a, k) for k, w, a in itertools.product(RRF_K, RRF_VECTOR_WEIGHT, ("best", "doc"))]
    return grid


def stage_one(exp: Experiment, chunking: tuple[int, int]) -> list[tuple[Bm25, float, float]]:
    """Each BM25 setting: train nDCG@10 alone, and its best over a few hybrid probes (depth 100)."""
    rows = []
    grid = bm25_grid()
    run = exp.runs[chunking]
    for n, bm25 in enumerate(grid, start=1):
        alone = exp.ndcg(Setting(chunking, bm25, Fusion("keyword", 0.0, MAX_DEPTH, "best")))
        probes = [
            exp.ndcg(Setting(chunking, bm25, Fusion("convex", w, 100, a)))
            for w, a in itertools.product(PROBE_WEIGHTS, PROBE_AGGREGATIONS)
        ]
        rows.append((bm25, alone, max(probes)))
        if Bm25(*DEFAULT_BM25) != bm25:
            run.keyword.pop(bm25, None)  # memory: lists are rebuilt (cheap) for the few kept in stage two
        if n % 20 == 0:
            progress(f"  stage 1 {chunking[0]}/{chunking[1]}: {n}/{len(grid)} BM25 settings")
    return rows


def neighbours(chosen: Setting) -> list[Setting]:
    """The chosen setting with one lever moved."""
    f = chosen.fusion
    out: list[Setting] = []
    if f.kind == "convex":
        for dw in (-0.1, -0.05, 0.05, 0.1):
            w = round(f.vector_weight + dw, 2)
            if 0 < w < 1:
                out.append(replace(chosen, fusion=replace(f, vector_weight=w)))
    out += [replace(chosen, fusion=replace(f, depth=d)) for d in DEPTHS if d != f.depth]
    out += [replace(chosen, fusion=replace(f, aggregation=a)) for a in AGGREGATIONS if a != f.aggregation]
    bm = chosen.bm25
    out += [replace(chosen, bm25=replace(bm, k1=k1)) for k1 in BM25_K1 if k1 != bm.k1]
    out += [replace(chosen, bm25=replace(bm, b=b)) for b in BM25_B if b != bm.b]
    out.append(replace(chosen, bm25=Bm25(*DEFAULT_BM25)))
    return [s for s in dict.fromkeys(out) if s != chosen]


def row(exp: Experiment, setting: Setting, note: str = "") -> list[Any]:
    train, test = exp.evaluate(setting, "train"), exp.evaluate(setting, "test")
    return [setting.label(), *tuning_cells(train, test), note]


HEADERS = ["setting", "train nDCG@10", "test nDCG@10", "test R@10", "test R@100", "test MRR@10", "note"]


def limit_blas_threads(threads: int) -> None:
    """The 2-core machine is shared with other people's runs: numpy's BLAS gets the embedding's thread budget."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not a declared dependency; BLAS then runs one short matrix product per chunking
        return
    threadpool_limits(limits=threads)


def parse_chunkings(value: str) -> list[tuple[int, int]]:
    pairs = []
    for part in value.split(","):
        size, overlap = part.split(":")
        pairs.append((int(size), int(overlap)))
    return pairs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chunkings", default="200:40,256:64,128:32", help="size:overlap in embedding tokens, comma separated."
    )
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime / torch threads for embedding.")
    parser.add_argument("--bm25-keep", type=int, default=3, help="BM25 settings per chunking taken to stage two.")
    parser.add_argument("--top", type=int, default=12, help="Best train settings to list.")
    args = parser.parse_args(argv)
    chunkings = parse_chunkings(args.chunkings)
    limit_blas_threads(args.threads)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # one DEBUG line per index build otherwise

    report = Report("bench.tune_retrieval")
    report.start("Hybrid retrieval tuning on SciFact: chunking x BM25 x fusion x chunk->document rule (train picks)")

    datasets = {split: load_dataset(scifact_dir(), split) for split in SPLITS}
    uploads = distinct_uploads(datasets["test"].documents)
    questions = {q.id: q.text for split in SPLITS for q in datasets[split].questions}
    query_ids = list(questions)
    row_of = {q: i for i, q in enumerate(query_ids)}
    qrels = {split: {q.id: q.qrels for q in datasets[split].questions} for split in SPLITS}
    exp = Experiment(uploads, qrels, row_of)
    progress(f"{len(uploads.documents):,} uploads, {len(query_ids):,} queries ({', '.join(SPLITS)})")

    embedder, encode, label = make_embedder(args.threads)
    cache = VectorCache(cache_dir("tune_retrieval", label), encode)
    query_vectors = cache.get([questions[q] for q in query_ids], "query")

    chunk_facts = []
    for chunking in chunkings:
        began = time.perf_counter()
        chunks = chunk_corpus(uploads, embedder.count_tokens, *chunking)
        vectors = cache.get(chunks.texts, "document")
        over = sum(embedder.count_tokens(t) > embedder.max_tokens - 2 for t in chunks.texts)
        chunk_facts.append([f"{chunking[0]}/{chunking[1]}", len(chunks.texts), over])
        exp.runs[chunking] = ChunkingRun(
            chunking,
            chunks,
            vector_lists(query_vectors, vectors, MAX_DEPTH),
            KeywordSide(chunks.texts, [questions[q] for q in query_ids]),
            {},
        )
        progress(f"chunks {chunking}: {len(chunks.texts):,} ready in {time.perf_counter() - began:.0f} s")

    heading("Chunk sets (index text = title line + chunk; MiniLM reads 254 word pieces plus [CLS]/[SEP])")
    print_table(["chunk size/overlap", "chunks", "index texts truncated by the model"], chunk_facts)

    # Stage 1 and stage 2 per chunking, train only.
    candidates: list[Setting] = []
    winners: dict[tuple[int, int], Setting] = {}
    kept_bm25: dict[tuple[int, int], list[Bm25]] = {}
    for chunking in chunkings:
        progress(f"stage 1 (BM25 grid) for chunks {chunking}")
        stage = stage_one(exp, chunking)
        stage.sort(key=lambda r: -r[2])
        keep = list(dict.fromkeys([*(r[0] for r in stage[: args.bm25_keep]), Bm25(*DEFAULT_BM25)]))
        kept_bm25[chunking] = keep
        print(f"\nStage 1, chunks {chunking[0]}/{chunking[1]}: BM25 settings by best hybrid probe on train")
        print(f"(probes: convex w_vec in {PROBE_WEIGHTS}, depth 100, agg in {PROBE_AGGREGATIONS})")
        best_alone = max(stage, key=lambda r: r[1])
        shown = [*stage[:10], best_alone, next(r for r in stage if r[0] == Bm25(*DEFAULT_BM25))]
        print_table(
            ["BM25", "train nDCG@10 keyword alone", "train nDCG@10 best hybrid probe", "note"],
            [
                [
                    r[0].label(),
                    f"{r[1]:.4f}",
                    f"{r[2]:.4f}",
                    "default" if r[0] == Bm25(*DEFAULT_BM25) else ("best alone" if r is best_alone else ""),
                ]
                for r in dict.fromkeys(shown)
            ],
        )
        progress(f"stage 2 (fusion grid) for chunks {chunking} over {len(keep)} BM25 settings")
        settings = [Setting(chunking, bm25, f) for bm25, f in itertools.product(keep, fusion_grid())]
        for n, s in enumerate(settings, start=1):
            exp.ndcg(s)
            if n % 200 == 0:
                progress(f"  stage 2: {n}/{len(settings)}")
        candidates += settings
        winners[chunking] = max(settings, key=exp.ndcg)

    ranked = sorted(candidates, key=lambda s: -exp.ndcg(s))
    chosen = ranked[0]
    default = Setting(DEFAULT_CHUNKING, Bm25(*DEFAULT_BM25), Fusion("convex", 0.45, 100, "best"))

    print("\nThe setting chosen on train, today's default, and each search alone at the chosen chunking")
    rows = [row(exp, chosen, "CHOSEN (best train)")]
    if DEFAULT_CHUNKING in exp.runs:
        rows.append(row(exp, default, "today's default"))
    alone = chosen.chunking
    rows += [
        row(exp, Setting(alone, chosen.bm25, Fusion("keyword", 0, MAX_DEPTH, "best")), "keyword alone, chosen BM25"),
        row(exp, Setting(alone, Bm25(*DEFAULT_BM25), Fusion("keyword", 0, MAX_DEPTH, "best")), "keyword, default BM25"),
        row(exp, Setting(alone, chosen.bm25, Fusion("vector", 0, MAX_DEPTH, "best")), "vector alone"),
    ]
    print_table(HEADERS, rows)

    print("\nBest setting per chunking (train picks), with each search alone")
    rows = []
    for chunking, winner in winners.items():
        rows.append(row(exp, winner, "best of this chunking"))
        rows.append(row(exp, Setting(chunking, winner.bm25, Fusion("keyword", 0, MAX_DEPTH, "best")), "keyword alone"))
        rows.append(row(exp, Setting(chunking, winner.bm25, Fusion("vector", 0, MAX_DEPTH, "best")), "vector alone"))
    print_table(HEADERS, rows)

    heading(f"Best {args.top} settings on train (test shown, not used for choosing)")
    print_table(HEADERS, [row(exp, s) for s in ranked[: args.top]])

    heading("Neighbours of the chosen setting (one lever moved; train decides, test for robustness)")
    print_table(HEADERS, [row(exp, s) for s in neighbours(chosen)])

    for agg in AGGREGATIONS:
        best_agg = max((s for s in candidates if s.fusion.aggregation == agg), key=exp.ndcg)
        exp.evaluate(best_agg, "test")
    heading("Best train setting per chunk -> document rule")
    print_table(
        HEADERS,
        [row(exp, max((s for s in candidates if s.fusion.aggregation == a), key=exp.ndcg), a) for a in AGGREGATIONS],
    )

    n_eval = sum(1 for (_, split) in exp.scores if split == "train")
    print(
        f"\n{n_eval} settings scored on train; target test nDCG@10 >= {TARGET}: "
        f"{'reached' if exp.ndcg(chosen, 'test') >= TARGET else 'NOT reached'} by the train pick "
        f"({exp.ndcg(chosen, 'test'):.4f})"
    )
    report.extra_facts += [
        ["embedding", f"{label} (platform Embedder), {args.threads} thread(s)"],
        ["texts embedded this run", f"{cache.encoded:,} in {cache.seconds:.0f} s"],
        ["vector cache", str(cache.folder.relative_to(REPO))],
    ]
    report.finish()


if __name__ == "__main__":
    main()
