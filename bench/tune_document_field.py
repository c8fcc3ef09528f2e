"""Choose the keyword document field's weight on SciFact *train*, and try pseudo-relevance feedback; report test.

Offline, with the pieces ``bench/tune_retrieval.py`` uses (the platform's parse -> chunk -> ``index_text``
steps, its ``onnx-int8`` Embedder with vectors cached under bench/.cache/tune_retrieval, exact cosine, bm25s
at the platform's K1 / B, ``convex`` fusion by document at 200 candidates):

- the document field (``retrieval.document_field``): each document's rows built by ``document_records``
  from its chunks, BM25 over them, added to each chunk's BM25 with weight ``lam`` (``with_document_scores``;
  by document that is best chunk + lam * document), for keyword mode alone and in the hybrid at a few
  vector weights;
- Rocchio on the query vector (q + beta * mean of the top-k chunk vectors) and RM3 on the chunk BM25
  (top fb chunks' term distribution mixed into the query), each against the setting without them.

Train picks; test is printed for the picks and the baseline only.
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
from retrieval.bm25_params import K1, B
from retrieval.corpus_index import top_positive
from retrieval.document_field import document_records
from retrieval.fusion import convex
from retrieval.text_analysis import tokenize, tokenize_many

SPLITS = ("train", "test")
DEPTH = 200
LAMBDAS = (0.0, 0.5, 1.0, 2.0, 4.0)
VECTOR_WEIGHTS = (0.45, 0.5, 0.55, 0.6)
DEFAULT = (2.0, 0.55)
"""(document weight, vector weight) the platform ships."""
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

    def __init__(self, texts: Sequence[str]) -> None:
        self.vocab: dict[str, int] = {}
        self.terms = [[self.vocab.setdefault(w, len(self.vocab)) for w in ws] for ws in tokenize_many(texts)]
        self.model = bm25s.BM25(k1=K1, b=B, method="lucene")
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

    chunks, documents = Bm25Side([r.searchable_text for r in records]), Bm25Side([r.searchable_text for r in rows])
    query_terms = [(chunks.ids(questions[q]), documents.ids(questions[q])) for q in qids]
    chunk_scores = [chunks.scores(Counter(c)) for c, _ in query_terms]
    document_hits = [best_first(documents.scores(Counter(d)), doc_of_row) for _, d in query_terms]
    vector = [best_first_list(v, chunk_doc) for v in vector_lists(query_vectors, chunk_vectors, DEPTH)]

    def keyword(lam: float, scores: list[np.ndarray] = chunk_scores) -> list[Scored]:
        out = []
        for chunk_row, doc_hits in zip(scores, document_hits, strict=True):
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

    table, picks = [], {}
    keyword_lists = {lam: keyword(lam) for lam in LAMBDAS}
    for lam, kw in keyword_lists.items():
        train_kw = metrics(kw, "train")["ndcg@10"]
        hybrids = {w: metrics(hybrid(vector, kw, w), "train")["ndcg@10"] for w in VECTOR_WEIGHTS}
        table.append([f"{lam:g}", f"{train_kw:.4f}", *(f"{hybrids[w]:.4f}" for w in VECTOR_WEIGHTS)])
        picks.update({(lam, w): score for w, score in hybrids.items()})
    print("\nTrain nDCG@10: keyword alone and hybrid (convex by document) per document weight and vector weight")
    print_table(["document weight", "keyword", *(f"hybrid w_vec={w}" for w in VECTOR_WEIGHTS)], table)

    best_lam = max(LAMBDAS, key=lambda lam: metrics(keyword_lists[lam], "train")["ndcg@10"])
    best_pair = max(picks, key=picks.get)
    headers = ["setting", "train nDCG@10", "test nDCG@10", "test R@10", "test R@100", "test MRR@10"]

    def row(name: str, ranked: list[Scored]) -> list[str]:
        return [name, *tuning_cells(metrics(ranked, "train"), metrics(ranked, "test"))]

    lam, w = DEFAULT
    base_hybrid = hybrid(vector, keyword_lists[0.0], w)
    shown = [
        row("vector alone", vector),
        row("keyword, chunks alone (document weight 0)", keyword_lists[0.0]),
        row(f"keyword, best train document weight {best_lam:g}", keyword_lists[best_lam]),
        row(f"keyword, shipped document weight {lam:g}", keyword_lists[lam]),
        row(f"hybrid, chunks alone, w_vec {w}", base_hybrid),
        row(
            f"hybrid, best train pair ({best_pair[0]:g}, w_vec {best_pair[1]})",
            hybrid(vector, keyword_lists[best_pair[0]], best_pair[1]),
        ),
        row(f"hybrid, shipped ({lam:g}, w_vec {w})", hybrid(vector, keyword_lists[lam], w)),
    ]

    progress("pseudo-relevance feedback")
    shipped_kw = keyword_lists[lam]
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
            for i, (c, _) in enumerate(query_terms)
        ]
        rm3_kw = keyword(lam, expanded)
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
