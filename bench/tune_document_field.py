"""Choose the keyword document field's BM25 pair and weight on SciFact *train*, try feedback; report test.

Offline, with the pieces ``bench/tune_retrieval.py`` uses (the platform's parse -> chunk -> ``index_text``
steps, its ``onnx-int8`` Embedder with vectors cached under bench/.cache/tune_retrieval, exact cosine, bm25s
at the platform's chunk parameters, ``convex`` fusion by document at 200 candidates):

- the document field (``retrieval.document_field``): each document's rows built by ``document_records``
  from its chunks, BM25 over them at a (k1, b) pair of their own, added to each chunk's BM25 with weight
  ``lam`` (``with_document_scores``; by document that is best chunk + lam * document), for keyword mode alone
  and in the hybrid at the shipped vector weight. The pick: the best train keyword ranking among the settings
  whose train hybrid is within ``HYBRID_TOLERANCE`` of the document field at the chunks' own pair and the
  shipped weight (a field that helps keyword search must not cost the hybrid); then the vector weight is swept
  for the pick;
- Rocchio on the query vector (q + beta * mean of the top-k chunk vectors) and RM3 on the chunk BM25
  (top fb chunks' term distribution mixed into the query), each against the setting without them.

Train picks; test is printed for the picks and the baseline only. The platform ships tantivy's own pair (k1 1.2 /
b 0.75, ``retrieval.bm25_params.DOCUMENTS``), which its default keyword engine ranks without reading a row; the
table shows it beside the pick.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Callable, Sequence

import bm25s
import numpy as np

from bench.common import Report, cache_dir, print_table, progress, scifact_dir, tuning_cells
from bench.tune_retrieval import (
    Uploads,
    VectorCache,
    distinct_uploads,
    limit_blas_threads,
    make_embedder,
    vector_lists,
)
from core.types import ChunkRecord
from evaluation.datasets import load_dataset
from evaluation.metrics import score_rankings
from ingest.chunking import chunk_sections
from ingest.parsers import detect_kind, parse_document
from ingest.records import embedding_text
from retrieval.bm25_params import CHUNKS, DOCUMENTS, Bm25Params
from retrieval.corpus_index import top_positive
from retrieval.document_field import document_records
from retrieval.fusion import convex
from retrieval.text_analysis import tokenize, tokenize_many

SPLITS = ("train", "test")
DEPTH = 200
LAMBDAS = (0.0, 1.0, 2.0, 3.0, 4.0)
DOCUMENT_PARAMS = tuple(Bm25Params(k1, b) for k1 in (0.45, 0.9, 1.2, 1.5) for b in (0.2, 0.5, 0.75))
VECTOR_WEIGHTS = (0.45, 0.5, 0.55, 0.6)
HYBRID_TOLERANCE = 0.001
REFERENCE_LAMBDA = 2.0
"""The weight that, with the document rows scored at the chunks' pair, sets the train hybrid a pick must hold."""
DEFAULT = (DOCUMENTS, 3.0, 0.55)
"""(document BM25 pair, document weight, vector weight) the platform ships."""
Scored = list[tuple[int, float]]


def chunk_records(
    uploads: Uploads, count_tokens: Callable[[str], int], size: int = 128, overlap: int = 32
) -> list[ChunkRecord]:
    """The pipeline's records minus the stores: document id = the upload's row."""
    records = []
    for n, document in enumerate(uploads.documents):
        data = document.upload_text().encode("utf-8")
        parsed = parse_document(data, detect_kind(data, document.filename, None), max_pages=2000)
        for draft in chunk_sections(parsed.sections, count_tokens, size, overlap):
            records.append(
                ChunkRecord(
                    id=str(len(records)),
                    text=draft.text,
                    index_text=embedding_text(draft, parsed.title),
                    payload={"document_id": str(n), "ordinal": draft.ordinal},
                )
            )
    return records


class Bm25Side:
    """bm25s at the platform's parameters over some texts; per-term score rows cached for weighted queries."""

    def __init__(self, texts: Sequence[str], params: Bm25Params) -> None:
        self.vocab: dict[str, int] = {}
        self.terms = [[self.vocab.setdefault(w, len(self.vocab)) for w in ws] for ws in tokenize_many(texts)]
        self.model = bm25s.BM25(k1=params.k1, b=params.b, method="lucene")
        self.model.index((self.terms, self.vocab), create_empty_token=False, show_progress=False)
        self._rows: dict[int, np.ndarray] = {}

    def ids(self, query: str) -> list[int]:
        return [self.vocab[w] for w in tokenize(query) if w in self.vocab]

    def term(self, term: int) -> np.ndarray:
        if term not in self._rows:
            self._rows[term] = self.model.get_scores_from_ids([term])
        return self._rows[term]

    def scores(self, weights: dict[int, float]) -> np.ndarray:
        total = np.zeros(len(self.terms))
        for term, weight in weights.items():
            total += weight * self.term(term)
        return total


def best_first(scores: np.ndarray, rows_to_docs: np.ndarray) -> Scored:
    seen: dict[int, float] = {}
    for row in top_positive(scores, DEPTH):
        seen.setdefault(int(rows_to_docs[row]), float(scores[row]))
    return list(seen.items())


def rm3(side: Bm25Side, query: list[int], first: np.ndarray, fb: int, terms: int, original: float) -> dict[int, float]:
    weights: dict[int, float] = Counter()
    top = top_positive(first, fb)
    for row in top:
        counts = Counter(side.terms[row])
        for term, count in counts.items():
            weights[term] += first[row] / first[top].sum() * count / len(side.terms[row])
    chosen = Counter(weights).most_common(terms)
    norm = sum(w for _, w in chosen) or 1.0
    mixed: dict[int, float] = Counter()
    for term in query:
        mixed[term] += original / len(query)
    for term, weight in chosen:
        mixed[term] += (1 - original) * weight / norm
    return mixed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for embedding.")
    args = parser.parse_args(argv)
    limit_blas_threads(args.threads)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    report = Report("bench.tune_document_field")
    report.start("Keyword document field and pseudo-relevance feedback on SciFact (train picks, test reports)")

    datasets = {split: load_dataset(scifact_dir(), split) for split in SPLITS}
    uploads = distinct_uploads(datasets["test"].documents)
    questions = {q.id: q.text for split in SPLITS for q in datasets[split].questions}
    qids = list(questions)
    qrels = {split: {q.id: q.qrels for q in datasets[split].questions} for split in SPLITS}
    embedder, encode, label = make_embedder(args.threads)
    cache = VectorCache(cache_dir("tune_retrieval", label), encode)
    query_vectors = cache.get([questions[q] for q in qids], "query")
    records = chunk_records(uploads, embedder.count_tokens)
    chunk_vectors = cache.get([r.searchable_text for r in records], "document")
    chunk_doc = np.array([int(r.payload["document_id"]) for r in records])
    rows = document_records(records)
    doc_of_row = np.array([int(r.payload["document_id"]) for r in rows])
    progress(f"{len(records):,} chunks, {len(rows):,} document rows")

    chunks = Bm25Side([r.searchable_text for r in records], CHUNKS)
    chunk_terms = [chunks.ids(questions[q]) for q in qids]
    chunk_scores = [chunks.scores(Counter(c)) for c in chunk_terms]
    document_texts = [r.searchable_text for r in rows]
    document_hits: dict[Bm25Params, list[Scored]] = {}
    for params in DOCUMENT_PARAMS:
        documents = Bm25Side(document_texts, params)
        scored = (documents.scores(Counter(documents.ids(questions[q]))) for q in qids)
        document_hits[params] = [best_first(s, doc_of_row) for s in scored]
    vector = [best_first_list(v, chunk_doc) for v in vector_lists(query_vectors, chunk_vectors, DEPTH)]

    def keyword(params: Bm25Params, lam: float, scores: list[np.ndarray] = chunk_scores) -> list[Scored]:
        out = []
        for chunk_row, doc_hits in zip(scores, document_hits[params], strict=True):
            combined = dict(best_first(chunk_row, chunk_doc))
            for doc, score in doc_hits:
                combined[doc] = combined.get(doc, 0.0) + lam * score
            out.append(sorted(combined.items(), key=lambda item: -item[1])[:DEPTH])
        return out

    def metrics(ranked: list[Scored], split: str) -> dict[str, float]:
        rankings = {
            q: [d for doc, _ in ranked[i][:100] for d in uploads.dataset_ids[doc]]
            for i, q in enumerate(qids)
            if q in qrels[split]
        }
        return score_rankings(qrels[split], rankings)[0]

    def hybrid(vec: list[Scored], kw: list[Scored], w: float) -> list[Scored]:
        return [convex([v, k], weights=(w, round(1 - w, 4))) for v, k in zip(vec, kw, strict=True)]

    shipped_params, shipped_lam, w = DEFAULT
    train: dict[tuple[Bm25Params, float], tuple[float, float]] = {}  # (keyword, hybrid at the shipped w_vec)
    table = []
    for params in DOCUMENT_PARAMS:
        cells = [f"k1 {params.k1:g} b {params.b:g}"]
        for lam in LAMBDAS:
            kw = keyword(params, lam)
            train[params, lam] = metrics(kw, "train")["ndcg@10"], metrics(hybrid(vector, kw, w), "train")["ndcg@10"]
            cells.append("{:.4f} / {:.4f}".format(*train[params, lam]))
        table.append(cells)
    print(f"\nTrain nDCG@10, keyword alone / hybrid at w_vec {w} (convex by document), per document BM25 pair, weight")
    print_table(["document field", *(f"weight {lam:g}" for lam in LAMBDAS)], table)

    reference = train[CHUNKS, REFERENCE_LAMBDA][1]
    allowed = [key for key, (_, hyb) in train.items() if hyb >= reference - HYBRID_TOLERANCE]
    pick = max(allowed, key=lambda key: train[key][0])
    sweep = {v: metrics(hybrid(vector, keyword(*pick), v), "train")["ndcg@10"] for v in VECTOR_WEIGHTS}
    print(
        f"\nPick (best train keyword whose train hybrid >= {reference:.4f} - {HYBRID_TOLERANCE}): document pair k1 "
        f"{pick[0].k1:g} b {pick[0].b:g}, weight {pick[1]:g}; hybrid train per w_vec "
        + ", ".join(f"{v}: {score:.4f}" for v, score in sweep.items())
    )
    headers = ["setting", "train nDCG@10", "test nDCG@10", "test R@10", "test R@100", "test MRR@10"]

    def row(name: str, ranked: list[Scored]) -> list[str]:
        return [name, *tuning_cells(metrics(ranked, "train"), metrics(ranked, "test"))]

    chunks_alone = keyword(CHUNKS, 0.0)
    before = keyword(CHUNKS, REFERENCE_LAMBDA)
    shipped_kw = keyword(shipped_params, shipped_lam)
    shipped = f"k1 {shipped_params.k1:g} b {shipped_params.b:g}, weight {shipped_lam:g}"
    shown = [
        row("vector alone", vector),
        row("keyword, chunks alone (document weight 0)", chunks_alone),
        row(f"keyword, document field at the chunks' pair, weight {REFERENCE_LAMBDA:g}", before),
        row(f"keyword, pick (k1 {pick[0].k1:g} b {pick[0].b:g}, weight {pick[1]:g})", keyword(*pick)),
        row(f"keyword, shipped ({shipped})", shipped_kw),
        row(f"hybrid, chunks alone, w_vec {w}", hybrid(vector, chunks_alone, w)),
        row(f"hybrid, document field at the chunks' pair, weight {REFERENCE_LAMBDA:g}", hybrid(vector, before, w)),
        row(f"hybrid, shipped ({shipped}, w_vec {w})", hybrid(vector, shipped_kw, w)),
    ]

    progress("pseudo-relevance feedback")
    for k, beta in ((3, 0.3), (5, 0.5), (10, 0.5)):
        moved = []
        for i, hits in enumerate(vector_lists(query_vectors, chunk_vectors, k)):
            q = query_vectors[i] + beta * chunk_vectors[[c for c, _ in hits]].mean(axis=0)
            moved.append(q / np.linalg.norm(q))
        rocchio = [best_first_list(v, chunk_doc) for v in vector_lists(np.stack(moved), chunk_vectors, DEPTH)]
        shown.append(row(f"Rocchio k={k} beta={beta}: vector", rocchio))
        shown.append(row(f"Rocchio k={k} beta={beta}: hybrid (shipped)", hybrid(rocchio, shipped_kw, w)))
    for fb, terms, original in ((10, 10, 0.5), (5, 10, 0.7)):
        expanded = [
            chunks.scores(rm3(chunks, c, chunk_scores[i], fb, terms, original)) if c else chunk_scores[i]
            for i, c in enumerate(chunk_terms)
        ]
        rm3_kw = keyword(shipped_params, shipped_lam, expanded)
        shown.append(row(f"RM3 fb={fb} terms={terms} orig={original}: keyword", rm3_kw))
        shown.append(row(f"RM3 fb={fb} terms={terms} orig={original}: hybrid (shipped)", hybrid(vector, rm3_kw, w)))
    print("\nPicks, the shipped setting, and feedback against it (test shown, never used to choose)")
    print_table(headers, shown)
    report.finish()


def best_first_list(scored: Scored, chunk_doc: np.ndarray) -> Scored:
    seen: dict[int, float] = {}
    for chunk, score in scored:
        seen.setdefault(int(chunk_doc[chunk]), score)
    return list(seen.items())


if __name__ == "__main__":
    main()
