"""Keyword folders written in another layout become tantivy indexes on first use, with nothing lost.

Two other layouts can sit in a keyword folder: bm25s / rank-bm25's token corpus, and tantivy's first schema
(each chunk's terms stored as ``b"<term>..."``). Both are imported into the current schema the first time a
process opens the index; the rankings that come out are those a fresh tantivy index of the same chunks gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tantivy

from core.types import ChunkRecord, Hit
from retrieval import tantivy_index
from retrieval.bm25s_index import Bm25sIndex
from retrieval.document_field import document_index, document_records
from retrieval.payload import chunk_payload
from retrieval.tantivy_index import TantivyIndex
from retrieval.text_analysis import analyzer

TEXTS = [
    ("d1", "Stem cells differentiate into many cell types in the bone marrow."),
    ("d1", "Cell membranes regulate what enters and leaves the cell."),
    ("d2", "Neutron stars are the collapsed cores of massive stars."),
    ("d2", "Could life exist on planets orbiting neutron stars?"),
    ("d3", "Bone broth simmers for hours; marrow adds flavour to the stock."),
]
RECORDS = [
    ChunkRecord(id=f"c{i}", text=text, payload={"document_id": doc, "filename": f"{doc}.txt", "tags": ["t"]})
    for i, (doc, text) in enumerate(TEXTS)
]
QUERIES = ["stem cells in bone marrow", "neutron stars", "cell", "marrow", "planets"]
NAMES = ["idx", document_index("idx")]


def rankings(kw: TantivyIndex | Bm25sIndex, name: str) -> dict[str, list[tuple[str, float, dict]]]:
    return {q: [(h.id, round(h.score, 6), h.payload) for h in kw.search(name, q, 10)] for q in QUERIES}


def fresh_rankings(tmp_path: Path, records: list[ChunkRecord]) -> dict[str, dict[str, list]]:
    fresh = TantivyIndex(tmp_path / "fresh")
    for name in NAMES:
        fresh.add(name, records)
    return {name: rankings(fresh, name) for name in NAMES}


def test_a_bm25s_folder_is_imported_on_first_use(tmp_path: Path) -> None:
    old = Bm25sIndex(tmp_path / "kw")
    for name in NAMES:
        old.add(name, RECORDS)
    old.delete_document(NAMES[1], "d3")  # the log's changes are imported too, not only the snapshot
    old.close()
    expected = {
        NAMES[0]: fresh_rankings(tmp_path / "all", RECORDS)[NAMES[0]],
        NAMES[1]: fresh_rankings(tmp_path / "less", [r for r in RECORDS if r.payload["document_id"] != "d3"])[NAMES[1]],
    }

    kw = TantivyIndex(tmp_path / "kw")
    for name in NAMES:
        assert rankings(kw, name) == expected[name]
        assert not list((tmp_path / "kw" / name).glob("corpus.*"))  # the old layout is gone
        assert not list((tmp_path / "kw" / name).glob("bm25s-*"))
    assert kw.count(NAMES[0]) == len(RECORDS)
    assert sorted(p.name for p in (tmp_path / "kw").iterdir() if p.name.startswith(".") and p.is_dir()) == []

    kw.delete_document(NAMES[0], "d2")  # and it is an ordinary index from then on
    kw.add(NAMES[0], [ChunkRecord(id="z", text="zeppelin", payload={"document_id": "dz"})])
    again = TantivyIndex(tmp_path / "kw")  # another process: nothing left to import
    assert [h.id for h in again.search(NAMES[0], "zeppelin neutron", 10)] == ["z"]


def test_a_delete_or_add_first_imports_too(tmp_path: Path) -> None:
    old = Bm25sIndex(tmp_path / "kw")
    old.add("idx", RECORDS)
    old.close()
    kw = TantivyIndex(tmp_path / "kw")
    kw.delete_document("idx", "d1")  # a worker's first call may be a delete: nothing else may be lost
    assert kw.count("idx") == len(RECORDS) - 2
    other = TantivyIndex(tmp_path / "other")
    Bm25sIndex(tmp_path / "other").add("idx", RECORDS)
    other.add("idx", [ChunkRecord(id="z", text="zeppelin", payload={"document_id": "dz"})])
    assert other.count("idx") == len(RECORDS) + 1


def _earlier_schema(terms_field: str) -> tantivy.Schema:
    """An earlier schema of this backend, as it was written: every field then, the chunk's terms stored in
    ``terms_field`` (the first schema's ``bag``; ``term_hashes`` before the ``document_key`` field came)."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    for field in ("document_id", "filename", "tags"):
        builder.add_text_field(field, tokenizer_name="raw", index_option="basic")
    builder.add_float_field("uploaded_at", indexed=True, fast=True)
    builder.add_text_field("terms", tokenizer_name="whitespace", index_option="freq")
    builder.add_bytes_field(terms_field, stored=True)
    builder.add_unsigned_field("length", fast=True)
    builder.add_bytes_field("payload", stored=True)
    return builder.build()


def _write_first_schema(folder: Path, records: list[ChunkRecord]) -> None:
    folder.mkdir(parents=True)
    index = tantivy.Index(_earlier_schema("bag"), path=str(folder))
    writer = index.writer(heap_size=15_000_000, num_threads=1)
    for record, terms in zip(records, analyzer("english").tokenize_many([r.text for r in records]), strict=True):
        doc = tantivy.Document()
        doc.add_text("chunk_id", record.id)
        doc.add_text("document_id", record.payload["document_id"])
        doc.add_text("terms", " ".join(terms))
        doc.add_bytes("bag", "".join(f"<{term}>" for term in terms).encode())
        doc.add_unsigned("length", len(terms))
        doc.add_bytes("payload", json.dumps(chunk_payload(record)).encode())
        writer.add_document(doc)
    writer.commit()
    writer.wait_merging_threads()


@pytest.mark.parametrize("name", NAMES)
def test_an_index_of_the_first_tantivy_schema_is_imported(tmp_path: Path, name: str) -> None:
    _write_first_schema(tmp_path / "kw" / name, RECORDS)
    kw = TantivyIndex(tmp_path / "kw")
    assert rankings(kw, name) == fresh_rankings(tmp_path, RECORDS)[name]


def test_an_import_cut_short_is_done_again_and_a_cut_swap_is_finished(tmp_path: Path) -> None:
    root = tmp_path / "kw"
    Bm25sIndex(root).add("idx", RECORDS)
    (root / ".idx.importing").mkdir()  # a crash while building the new index: the old folder is intact
    (root / ".idx.importing" / "meta.json").write_text("{}")
    assert rankings(TantivyIndex(root), "idx") == fresh_rankings(tmp_path, RECORDS)["idx"]

    # A crash between the swap's renames: the old folder retired, the staged one not yet in place.
    (root / "idx").rename(root / ".idx.importing")
    Bm25sIndex(root).add("idx", [RECORDS[0]])
    (root / "idx").rename(root / ".idx.retired")
    assert rankings(TantivyIndex(root), "idx") == fresh_rankings(tmp_path, RECORDS)["idx"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["idx"]


def test_hits_carry_the_payload_the_old_index_stored(tmp_path: Path) -> None:
    Bm25sIndex(tmp_path).add("idx", RECORDS)
    (hit,) = TantivyIndex(tmp_path).search("idx", "planets", 1)
    assert hit == Hit(id="c3", score=hit.score, payload=chunk_payload(RECORDS[3]))


def test_an_index_without_document_keys_is_searched_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its terms are not stored, so it cannot be imported; its document field reads its rows for their documents
    instead (what a re-index replaces), ranked as a fresh index ranks them, and later writes keep working."""
    with monkeypatch.context() as patched:
        patched.setattr(tantivy_index, "SCHEMA", _earlier_schema("term_hashes"))
        old = TantivyIndex(tmp_path / "kw")
        old.add("idx", RECORDS[:2])
        old.add(document_index("idx"), document_records(RECORDS[:2]))
    kw = TantivyIndex(tmp_path / "kw")
    kw.add("idx", RECORDS[2:])
    kw.add(document_index("idx"), document_records(RECORDS[2:]))
    assert (
        "document_key" not in json.loads((tmp_path / "kw" / document_index("idx") / "meta.json").read_text())["schema"]
    )
    fresh = TantivyIndex(tmp_path / "fresh")
    fresh.add(document_index("idx"), document_records(RECORDS))
    for query in QUERIES:
        a, b = kw.search_documents("idx", query, 10), fresh.search_documents("idx", query, 10)
        assert list(a.keys) == list(b.keys), query
        assert list(a.scores) == pytest.approx(list(b.scores)), query
        assert a.rows(range(len(a.keys))) == b.rows(range(len(b.keys))), query


def test_rows_an_older_process_adds_without_a_key_are_read_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = TantivyIndex(tmp_path / "kw")
    kw.add(document_index("idx"), document_records(RECORDS[:2]))
    with monkeypatch.context() as patched:
        patched.setattr(tantivy_index, "DOCUMENT_KEY", "no_such_field")  # the writer of the version before
        TantivyIndex(tmp_path / "kw").add(document_index("idx"), document_records(RECORDS[2:]))
    fresh = TantivyIndex(tmp_path / "fresh")
    fresh.add(document_index("idx"), document_records(RECORDS))
    for query in QUERIES:
        a, b = kw.search_documents("idx", query, 10), fresh.search_documents("idx", query, 10)
        assert list(a.keys) == list(b.keys), query
        assert a.rows(range(len(a.keys))) == b.rows(range(len(b.keys))), query
