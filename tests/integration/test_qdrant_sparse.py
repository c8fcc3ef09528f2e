"""The Qdrant sparse-vector keyword index ranks like the in-process BM25 and honours filters and deletes.

Runs on qdrant-client's local mode (in memory), which implements the same ``Modifier.IDF`` scoring as
the server. The fixture corpus is SciFact: every document some test query judges relevant plus the first
1,500 others (1,783 documents), queried with 50 test queries. The oracle is bm25s itself (Lucene IDF,
the platform's k1 and b) on the same analyzer's tokens, i.e. what the in-process backend computes.

Measured here (50 queries, with bm25s's default k1=1.5, b=0.75, the platform's parameters until
bench/tune_retrieval.py chose 0.45 / 0.2, which weigh the length norm less): with the true average length (158
terms) every returned score equals bm25s's score for that document (relative error < 1e-4, float32 storage):
mean top-10 overlap 1.0, top-1 agreement 1.0. With ``avg_len`` estimated from a 200-token chunk size instead
(94 terms: SciFact abstracts are longer than a chunk), mean top-10 overlap 0.928 (worst query 0.7), top-1
agreement 0.94, Kendall tau of the returned ten against the oracle's scores 0.84 - the price of a fixed length
norm on documents that were not cut to the chunk size.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bm25s
import numpy as np
import pytest
from qdrant_client import QdrantClient

from core.ids import chunk_id
from core.types import ChunkRecord, SearchFilter
from retrieval.bm25_params import CHUNKS
from retrieval.keyword import KeywordIndex
from retrieval.qdrant_sparse import QdrantSparseIndex, estimated_avg_len
from retrieval.text_analysis import tokenize, tokenize_many

OTHERS = 1500
QUERIES = 50
K = 10


@dataclass(frozen=True)
class Fixture:
    records: list[ChunkRecord]
    tokens: list[list[str]]
    queries: list[str]


def read_jsonl(path: Path) -> Iterator[dict]:
    with path.open() as f:
        for line in f:
            yield json.loads(line)


@pytest.fixture(scope="module")
def scifact(shared_data: Path) -> Fixture:
    root = shared_data / "scifact"
    lines = (root / "qrels" / "test.tsv").read_text().splitlines()[1:]
    judged: dict[str, set[str]] = {}
    for line in lines:
        query_id, doc_id, _ = line.split("\t")
        judged.setdefault(query_id, set()).add(doc_id)
    relevant = set().union(*judged.values())
    corpus = list(read_jsonl(root / "corpus.jsonl"))
    docs = [d for d in corpus if d["_id"] in relevant] + [d for d in corpus if d["_id"] not in relevant][:OTHERS]
    records = [
        ChunkRecord(
            id=chunk_id(d["_id"], 0),
            text=f"{d['title']}\n{d['text']}",
            payload={
                "document_id": d["_id"],
                "filename": f"{d['_id']}.txt",
                "tags": ["even" if i % 2 == 0 else "odd"],
                "uploaded_at": float(i),
                "text": d["text"],
            },
        )
        for i, d in enumerate(docs)
    ]
    texts = {q["_id"]: q["text"] for q in read_jsonl(root / "queries.jsonl")}
    queries = [texts[q] for q in judged if q in texts][:QUERIES]
    return Fixture(records, tokenize_many(r.text for r in records), queries)


def sparse_index(records: list[ChunkRecord], avg_len: float) -> QdrantSparseIndex:
    index = QdrantSparseIndex(QdrantClient(location=":memory:"), avg_len=avg_len)
    index.add("scifact__v1", records)
    return index


@pytest.fixture(scope="module")
def oracle(scifact: Fixture) -> bm25s.BM25:
    model = bm25s.BM25(method="lucene", k1=CHUNKS.k1, b=CHUNKS.b)
    model.index(scifact.tokens, show_progress=False)
    return model


def oracle_scores(oracle: bm25s.BM25, query: str) -> np.ndarray:
    return oracle.get_scores(tokenize(query))


def top_overlap(index: QdrantSparseIndex, oracle: bm25s.BM25, fixture: Fixture) -> list[float]:
    ids = [r.id for r in fixture.records]
    overlaps = []
    for query in fixture.queries:
        expected = {ids[i] for i in np.argsort(-oracle_scores(oracle, query))[:K]}
        got = {hit.id for hit in index.search("scifact__v1", query, K)}
        overlaps.append(len(got & expected) / K)
    return overlaps


def test_scores_equal_bm25s_with_the_true_average_length(scifact: Fixture, oracle: bm25s.BM25) -> None:
    avg_len = statistics.mean(len(t) for t in scifact.tokens)
    index = sparse_index(scifact.records, avg_len)
    position = {r.id: i for i, r in enumerate(scifact.records)}
    for query in scifact.queries:
        expected = oracle_scores(oracle, query)
        hits = index.search("scifact__v1", query, K)
        assert len(hits) == K
        got = np.array([hit.score for hit in hits])
        want = expected[[position[hit.id] for hit in hits]]
        np.testing.assert_allclose(got, want, rtol=1e-4)
        # Nothing outside the returned ten scores higher than the tenth (ties aside).
        assert np.sort(expected)[-K] <= got[-1] * (1 + 1e-4)
    assert statistics.mean(top_overlap(index, oracle, scifact)) >= 0.98


def test_estimated_average_length_keeps_rankings_close(scifact: Fixture, oracle: bm25s.BM25) -> None:
    index = sparse_index(scifact.records, estimated_avg_len(200))
    assert statistics.mean(top_overlap(index, oracle, scifact)) >= 0.8


@pytest.fixture(scope="module")
def small(scifact: Fixture) -> QdrantSparseIndex:
    return sparse_index(scifact.records[:40], estimated_avg_len(200))


def test_filters_match_the_reference_semantics(scifact: Fixture, small: QdrantSparseIndex) -> None:
    records = scifact.records[:40]
    query = "cell protein expression in patients"
    everything = small.search("scifact__v1", query, 40)
    assert len(everything) > 10
    filters = [
        SearchFilter(tags=("even",)),
        SearchFilter(document_ids=tuple(r.payload["document_id"] for r in records[:5])),
        SearchFilter(filenames=(records[3].payload["filename"], records[8].payload["filename"])),
        SearchFilter(tags=("odd",), uploaded_after=_ts(10), uploaded_before=_ts(30)),
    ]
    for flt in filters:
        hits = small.search("scifact__v1", query, 40, flt)
        assert hits, flt
        assert all(flt.matches(hit.payload) for hit in hits), flt
        assert [h.id for h in hits] == [h.id for h in everything if flt.matches(h.payload)], flt


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_count_delete_and_drop(scifact: Fixture) -> None:
    records = scifact.records[:20]
    index: KeywordIndex = sparse_index(records, estimated_avg_len(200))
    assert index.count("scifact__v1") == 20
    index.add("scifact__v1", records[:5])  # same ids overwrite, never duplicate
    assert index.count("scifact__v1") == 20
    gone = records[0]
    query = gone.text[:200]
    assert index.search("scifact__v1", query, 1)[0].id == gone.id
    index.delete_document("scifact__v1", gone.payload["document_id"])
    assert index.count("scifact__v1") == 19
    assert all(hit.id != gone.id for hit in index.search("scifact__v1", query, 20))
    assert index.search("scifact__v1", "the and of", 5) == []  # stopwords only: no terms
    assert index.count("missing__v1") == 0
    assert index.search("missing__v1", query, 5) == []
    index.drop("scifact__v1")
    assert index.count("scifact__v1") == 0
    index.close()
