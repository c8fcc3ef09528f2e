"""One contract for every KeywordIndex in the registry (bm25s, rank-bm25, tantivy, Qdrant sparse vectors), and
rank-bm25 as the oracle for bm25s and tantivy.

Qdrant sparse runs on qdrant-client's local mode, which scores like the server (``Modifier.IDF``) but locks its
folder to one client: a second index on the same folder shares the live client, as a second replica shares
the server. Chunk ids are UUIDs, as ``core.ids.chunk_id`` makes them (Qdrant takes no other string ids); the
tests name them and ``ids`` reads the names back.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from core.config import Settings
from core.errors import BadInput
from core.types import ChunkRecord, Hit, SearchFilter
from retrieval.bm25_params import Bm25Params
from retrieval.bm25s_index import Bm25sIndex
from retrieval.document_field import document_index, document_key, document_of, document_records
from retrieval.keyword import KEYWORD_INDEXES, KeywordIndex
from retrieval.qdrant_sparse import QdrantSparseIndex, estimated_avg_len
from retrieval.rank_bm25_index import RankBm25Index
from retrieval.tantivy_index import TantivyIndex

NAMES: dict[str, str] = {}
LOCAL_QDRANT: dict[Path, QdrantClient] = {}


def uid(name: str) -> str:
    chunk = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    NAMES[chunk] = name
    return chunk


def qdrant_sparse(folder: Path) -> KeywordIndex:
    try:
        client = QdrantClient(path=str(folder))
    except RuntimeError:  # the folder is held by a live client: share it
        client = LOCAL_QDRANT[folder]
    LOCAL_QDRANT[folder] = client
    return QdrantSparseIndex(client, avg_len=estimated_avg_len(Settings.model_fields["chunk_size_tokens"].default))


BACKENDS: dict[str, Callable[[Path], KeywordIndex]] = {
    "bm25s": Bm25sIndex,
    "rank_bm25": RankBm25Index,
    "qdrant_sparse": qdrant_sparse,
    "tantivy": TantivyIndex,
}

# (id, document, filename, tags, uploaded_at, text)
CORPUS = [
    ("c1", "d1", "cells.pdf", ["bio"], 1000.0, "Stem cells differentiate into many cell types in the bone marrow."),
    ("c2", "d1", "cells.pdf", ["bio"], 1000.0, "Cell membranes regulate what enters and leaves the cell."),
    ("c3", "d2", "stars.md", ["astro"], 2000.0, "Neutron stars are the collapsed cores of massive stars."),
    ("c4", "d2", "stars.md", ["astro", "bio"], 2000.0, "Could life exist on planets orbiting neutron stars?"),
    ("c5", "d3", "cooking.txt", [], 3000.0, "Bone broth simmers for hours; marrow adds flavour to the stock."),
    ("c6", "d3", "cooking.txt", ["food"], None, "Baking bread needs flour, water, salt and yeast cells."),
    ("c7", "d4", "notes.txt", [], 4000.0, "Meeting notes: budget, hiring, and the quarterly roadmap."),
]
QUERIES = ["stem cells in bone marrow", "neutron stars", "cell", "bread yeast", "life on planets", "marrow"]


def record(cid: str, doc: str, filename: str, tags: list[str], uploaded: float | None, text: str) -> ChunkRecord:
    payload: dict = {"document_id": doc, "filename": filename, "tags": tags}
    if uploaded is not None:
        payload["uploaded_at"] = uploaded
    return ChunkRecord(id=uid(cid), text=text, payload=payload)


RECORDS = [record(*row) for row in CORPUS]
PAYLOADS = {r.id: r.payload for r in RECORDS}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], KeywordIndex]]:
    yield BACKENDS[request.param]
    while LOCAL_QDRANT:  # what a test left open releases its folder
        LOCAL_QDRANT.popitem()[1].close()


@pytest.fixture
def index(backend: Callable[[Path], KeywordIndex], tmp_path: Path) -> Iterator[KeywordIndex]:
    kw = backend(tmp_path)
    kw.add("idx", RECORDS)
    yield kw
    kw.close()


def ids(hits: list[Hit]) -> list[str]:
    return [NAMES[h.id] for h in hits]


def ties_by_id(hits: list[Hit]) -> list[Hit]:
    """Hits of equal score in id order: a ranking says nothing about the order of ties."""
    return sorted(hits, key=lambda h: (-h.score, h.id))


def test_every_registered_backend_is_under_this_contract() -> None:
    assert set(BACKENDS) == set(KEYWORD_INDEXES)


def test_search_ranks_matching_chunks_only(index: KeywordIndex) -> None:
    assert index.count("idx") == len(CORPUS)
    hits = index.search("idx", "neutron stars", 10)
    assert ids(hits) == ["c3", "c4"]  # c3 says "stars" twice
    assert all(h.score > 0 for h in hits)
    assert hits[0].payload["text"] == CORPUS[2][5]
    assert hits[0].payload["document_id"] == "d2"
    assert ids(index.search("idx", "marrow", 1)) == ids(index.search("idx", "marrow", 10))[:1]


def test_stemming_and_stopwords_apply_to_queries(index: KeywordIndex) -> None:
    assert set(ids(index.search("idx", "CELLS", 10))) == {"c1", "c2", "c6"}
    assert index.search("idx", "the and of", 10) == []
    assert index.search("idx", "", 10) == []
    assert index.search("idx", "zeppelin", 10) == []
    assert index.search("idx", "cells", 0) == []


def test_add_is_idempotent_and_overwrites_by_id(index: KeywordIndex) -> None:
    index.add("idx", RECORDS)
    assert index.count("idx") == len(CORPUS)
    index.add("idx", [ChunkRecord(id=uid("c7"), text="zeppelin flights", payload={"document_id": "d4"})])
    assert index.count("idx") == len(CORPUS)
    assert ids(index.search("idx", "zeppelin", 10)) == ["c7"]
    assert index.search("idx", "budget", 10) == []


def test_incremental_add_equals_one_batch(backend: Callable[[Path], KeywordIndex], tmp_path: Path) -> None:
    one = backend(tmp_path / "one")
    one.add("idx", RECORDS)
    parts = backend(tmp_path / "parts")
    for start in range(0, len(RECORDS), 3):
        parts.add("idx", RECORDS[start : start + 3])
        parts.search("idx", "cells", 10)  # forces a rebuild between additions
    for query in QUERIES:
        a, b = one.search("idx", query, 10), parts.search("idx", query, 10)
        assert ids(a) == ids(b)
        assert [h.score for h in a] == pytest.approx([h.score for h in b])


def test_delete_document(index: KeywordIndex) -> None:
    index.delete_document("idx", "d1")
    assert index.count("idx") == len(CORPUS) - 2
    assert ids(index.search("idx", "cells", 10)) == ["c6"]
    index.delete_document("idx", "no-such-document")
    index.delete_document("no-such-index", "d1")
    assert index.count("idx") == len(CORPUS) - 2


AFTER = datetime.fromtimestamp(1500, tz=UTC)
BEFORE = datetime.fromtimestamp(3000, tz=UTC)
FILTERS = {
    "document_ids": SearchFilter(document_ids=("d1", "d3")),
    "filenames": SearchFilter(filenames=("stars.md",)),
    "tags_any_of": SearchFilter(tags=("bio", "food")),
    "uploaded_after": SearchFilter(uploaded_after=AFTER),
    "uploaded_before": SearchFilter(uploaded_before=BEFORE),
    "uploaded_between": SearchFilter(uploaded_after=AFTER, uploaded_before=BEFORE),
    "combined": SearchFilter(document_ids=("d1", "d2"), tags=("bio",)),
    "matches_nothing": SearchFilter(filenames=("missing.pdf",)),
}


@pytest.mark.parametrize("flt", FILTERS.values(), ids=FILTERS.keys())
def test_filters_restrict_before_ranking(index: KeywordIndex, flt: SearchFilter) -> None:
    """Filtered results = the unfiltered ranking restricted to admitted chunks, scores unchanged."""
    for query in QUERIES:
        everything = index.search("idx", query, 100)
        expected = [h for h in everything if flt.matches(PAYLOADS[h.id])]
        got = index.search("idx", query, 100, flt)
        assert ids(got) == ids(expected)
        assert [h.score for h in got] == pytest.approx([h.score for h in expected])
    # Before ranking, not after: with limit 1 the best admitted chunk still comes back.
    admitted = [h for h in index.search("idx", "cells marrow stars bread", 100) if flt.matches(PAYLOADS[h.id])]
    assert ids(index.search("idx", "cells marrow stars bread", 1, flt)) == ids(admitted[:1])


def test_persists_and_reloads(backend: Callable[[Path], KeywordIndex], tmp_path: Path) -> None:
    first = backend(tmp_path)
    first.add("idx", RECORDS)
    first.delete_document("idx", "d4")
    before = {q: first.search("idx", q, 10) for q in QUERIES}
    first.close()
    second = backend(tmp_path)
    assert second.count("idx") == len(CORPUS) - 1
    for query, hits in before.items():
        assert ties_by_id(second.search("idx", query, 10)) == ties_by_id(hits)


def test_sees_writes_from_another_process(backend: Callable[[Path], KeywordIndex], tmp_path: Path) -> None:
    """A second instance on the same folder stands in for a worker process: separate memory."""
    api, worker = backend(tmp_path), backend(tmp_path)
    api.add("idx", RECORDS)
    assert ids(api.search("idx", "zeppelin", 10)) == []
    worker.add("idx", [ChunkRecord(id=uid("z1"), text="zeppelin", payload={"document_id": "dz"})])
    assert ids(api.search("idx", "zeppelin", 10)) == ["z1"]
    assert api.count("idx") == len(CORPUS) + 1
    worker.delete_document("idx", "d2")  # the worker also sees the api's writes before its own
    assert api.count("idx") == len(CORPUS) - 1
    assert api.search("idx", "neutron", 10) == []


def test_drop_and_isolation(index: KeywordIndex) -> None:
    index.add("other", [ChunkRecord(id=uid("o1"), text="neutron stars everywhere", payload={"document_id": "x"})])
    assert ids(index.search("other", "neutron", 10)) == ["o1"]
    index.drop("other")
    assert index.count("other") == 0
    assert index.search("other", "neutron", 10) == []
    assert ids(index.search("idx", "neutron", 10)) == ["c3", "c4"]
    index.drop("never-created")
    with pytest.raises(BadInput):
        index.add("../escape", RECORDS)


def test_one_chunk_collection_still_matches(backend: Callable[[Path], KeywordIndex], tmp_path: Path) -> None:
    """Lucene idf stays positive where Robertson's (BM25Okapi's) would be zero or negative."""
    kw = backend(tmp_path)
    kw.add("tiny", RECORDS[:1])
    assert ids(kw.search("tiny", "stem cells", 5)) == ["c1"]


def test_bm25s_writes_its_matrix_cache(tmp_path: Path) -> None:
    kw = Bm25sIndex(tmp_path)
    kw.add("idx", RECORDS)
    kw.search("idx", "cells", 5)
    assert len(list((tmp_path / "idx").glob("bm25s-*"))) == 1
    kw.add("idx", [ChunkRecord(id=uid("n1"), text="new chunk", payload={"document_id": "n"})])
    kw.search("idx", "cells", 5)
    assert len(list((tmp_path / "idx").glob("bm25s-*"))) == 1  # the stale version is removed


def shared_data() -> Path:
    return Path(os.environ.get("RAG_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


def oracle_fixture() -> tuple[list[ChunkRecord], list[str]]:
    """200 SciFact abstracts and 25 of its queries when the data is present, else the built-in corpus."""
    scifact = shared_data() / "scifact"
    if not (scifact / "corpus.jsonl").exists():
        return RECORDS, QUERIES
    with open(scifact / "corpus.jsonl") as f:
        docs = [json.loads(line) for line in itertools.islice(f, 200)]
    with open(scifact / "queries.jsonl") as f:
        queries = [json.loads(line)["text"] for line in itertools.islice(f, 25)]
    recs = [
        ChunkRecord(id=d["_id"], text=f"{d.get('title', '')} {d['text']}".strip(), payload={"document_id": d["_id"]})
        for d in docs
    ]
    return recs, queries + QUERIES


@pytest.mark.parametrize("name", ["idx", document_index("idx")])  # chunk and document BM25 pairs
@pytest.mark.parametrize("fast_backend", [Bm25sIndex, functools.partial(TantivyIndex, rescore_depth=1000)])
def test_ranks_exactly_like_the_rank_bm25_oracle(
    fast_backend: Callable[[Path], KeywordIndex], name: str, tmp_path: Path
) -> None:
    """tantivy picks the candidates and re-scores them: with every match re-scored (a depth past the fixture's 200
    abstracts) its scores are rank-bm25's. How many of tantivy's best the default re-scores is a quality trade-off,
    measured through the platform (``tantivy_index.RESCORE_FACTOR``)."""
    recs, queries = oracle_fixture()
    fast, oracle = fast_backend(tmp_path / "fast"), RankBm25Index(tmp_path / "oracle")
    fast.add(name, recs)
    oracle.add(name, recs)
    matched = 0
    for query in queries:
        a, b = fast.search(name, query, 20), oracle.search(name, query, 20)
        assert [h.id for h in a] == [h.id for h in b], query
        assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-5)
        matched += bool(a)
    assert matched >= len(queries) // 2


@pytest.mark.parametrize("backend", [Bm25sIndex, RankBm25Index, TantivyIndex])
def test_document_field_indexes_score_with_their_own_bm25_pair(
    backend: Callable[[Path], KeywordIndex], tmp_path: Path
) -> None:
    kw = backend(tmp_path)
    for name in ("idx", document_index("idx")):
        kw.add(name, RECORDS)
    chunk_hits, document_hits = (kw.search(name, "neutron stars", 10) for name in ("idx", document_index("idx")))
    assert [h.id for h in chunk_hits] == [h.id for h in document_hits]
    assert [h.score for h in chunk_hits] != pytest.approx([h.score for h in document_hits])


def field_of(kw: KeywordIndex, records: list[ChunkRecord]) -> KeywordIndex:
    """``kw`` with ``records`` and their document rows, as the retriever writes them."""
    kw.add("idx", records)
    kw.add(document_index("idx"), document_records(records))
    return kw


def test_search_documents_ranks_the_document_rows_and_reads_them_on_request(
    backend: Callable[[Path], KeywordIndex], tmp_path: Path
) -> None:
    kw = field_of(backend(tmp_path), RECORDS)
    for query in QUERIES:
        rows = kw.search(document_index("idx"), query, 10)
        found = kw.search_documents("idx", query, 10)
        assert list(found.keys) == [document_key(document_of(row)) for row in rows], query
        assert list(found.scores) == pytest.approx([row.score for row in rows], rel=0.05)  # tantivy's length norms
        read = found.rows(list(reversed(range(len(rows)))))
        assert [(h.id, h.payload) for h in read] == [(h.id, h.payload) for h in reversed(rows)]
    marrow = kw.search_documents("idx", "marrow", 10, SearchFilter(document_ids=("d3",)))
    assert [NAMES[h.id] for h in marrow.rows(range(len(marrow.keys)))] == ["c5"]  # d3's row is its first chunk's
    assert kw.search_documents("idx", "zeppelin", 10).keys == []
    assert kw.search_documents("idx", "cells", 0).keys == []
    assert kw.search_documents("no-such-index", "cells", 10).keys == []


def test_search_documents_ranks_like_the_rank_bm25_oracle(tmp_path: Path) -> None:
    """tantivy ranks the document field itself (``bm25_params.DOCUMENTS`` is its own pair): its one-byte length
    norms (exact to 40 terms, then within a few percent) may swap near-ties, nothing more."""
    recs, queries = oracle_fixture()
    fast, oracle = field_of(TantivyIndex(tmp_path / "fast"), recs), field_of(RankBm25Index(tmp_path / "oracle"), recs)
    same_top = 0
    for query in queries:
        found, expected = fast.search_documents("idx", query, 20), oracle.search_documents("idx", query, 20)
        if not expected.keys:
            assert not found.keys
            continue
        same_top += found.keys[0] == expected.keys[0]
        by_key = dict(zip(expected.keys, expected.scores, strict=True))
        assert len(set(found.keys[:10]) & set(expected.keys[:10])) >= 0.8 * min(10, len(expected.keys)), query
        for key, score in zip(found.keys, found.scores, strict=True):
            if key in by_key:
                assert score == pytest.approx(by_key[key], rel=0.05), query
    assert same_top >= 0.9 * len([q for q in queries if oracle.search_documents("idx", q, 1).keys])


def test_the_tokenizer_an_index_is_built_with_is_the_one_its_queries_use(
    backend: Callable[[Path], KeywordIndex], tmp_path: Path
) -> None:
    kw = backend(tmp_path)
    kw.add("english", RECORDS)
    kw.add("simple", RECORDS, tokenizer="simple")
    assert kw.search("english", "the", 10) == []  # a stopword
    assert set(ids(kw.search("simple", "the", 10, tokenizer="simple"))) == {"c1", "c2", "c3", "c5", "c7"}
    # no stemming: "cells" does not match "cell" (c2) as it does through the english stemmer
    assert set(ids(kw.search("simple", "cells", 10, tokenizer="simple"))) == {"c1", "c6"}
    assert set(ids(kw.search("english", "cells", 10))) == {"c1", "c2", "c6"}
    kw.close()


def test_searches_during_writes_never_pair_an_id_with_another_chunks_payload(index: KeywordIndex) -> None:
    if isinstance(index, QdrantSparseIndex):
        pytest.skip("qdrant-client's local mode is not thread-safe; concurrent access is the Qdrant server's job")
    stop = threading.Event()
    errors: list[str] = []

    def write() -> None:
        try:
            for n in range(30):
                extra = record(f"x{n}", f"dx{n}", "extra.txt", [], 5000.0, f"Neutron stars and stem cells, note {n}.")
                index.add("idx", [extra])
                if n % 3 == 0:
                    index.delete_document("idx", f"dx{n}")
        except Exception as exc:  # a thread's exception would otherwise only be a warning
            errors.append(f"write: {exc!r}")
        finally:
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                for hit in index.search("idx", "neutron stars stem cells", 20):
                    expected = PAYLOADS[hit.id]["document_id"] if hit.id in PAYLOADS else f"d{NAMES[hit.id]}"
                    if hit.payload["document_id"] != expected:
                        errors.append(f"{hit.id} came with {hit.payload['document_id']}")
        except Exception as exc:
            errors.append(f"read: {exc!r}")

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


class _GatedRebuild(Bm25sIndex):
    """Holds the writer inside its matrix rebuild until the test lets it go."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.rebuilding, self.release = threading.Event(), threading.Event()
        self.builds = 0

    def _build_scorer(self, corpus: Any, folder: Path, params: Bm25Params) -> Any:
        self.builds += 1
        if self.builds > 1:
            self.rebuilding.set()
            assert self.release.wait(10)
        return super()._build_scorer(corpus, folder, params)


def test_searches_go_on_while_a_write_rebuilds_and_see_it_once_it_returns(tmp_path: Path) -> None:
    kw = _GatedRebuild(tmp_path)
    kw.add("idx", RECORDS)
    assert ids(kw.search("idx", "neutron stars", 10)) == ["c3", "c4"]  # the first search builds the matrix
    new = record("c8", "d5", "pulsars.md", [], 6000.0, "Pulsars are rotating neutron stars.")
    writer = threading.Thread(target=kw.add, args=("idx", [new]))
    writer.start()
    assert kw.rebuilding.wait(10)  # the writer is rebuilding the searched index's matrix ...
    assert ids(kw.search("idx", "neutron stars", 10)) == ["c3", "c4"]  # ... and searches read the last one
    kw.release.set()
    writer.join()
    builds = kw.builds
    assert "c8" in ids(kw.search("idx", "neutron stars", 10))  # searchable as soon as the write returned
    assert kw.builds == builds  # without a rebuild in the search
    kw.add("idx", [record("c9", "d6", "a.md", [], 7000.0, "Magnetars.")])
    kw.add("idx", [record("c10", "d7", "b.md", [], 8000.0, "Quasars.")])
    assert kw.builds == builds + 1  # only the first write after a search rebuilds; the next search does
    assert ids(kw.search("idx", "quasars", 10)) == ["c10"] and kw.builds == builds + 2
    kw.close()
