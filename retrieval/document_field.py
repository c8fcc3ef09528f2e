"""The keyword index's document-level field: each document's whole text as one BM25 row beside its chunks.

Chunk-level BM25 sees a 128-token window: a document whose query terms are spread over several chunks
scores no better than its best window, and whole-document BM25 ranks documents better than best-chunk BM25
(SciFact). The field keeps both: every document is also indexed as one row (in a sibling keyword index,
``document_index``) and a keyword search adds ``weight`` times the document's field score to the score of
each of its chunks (``with_document_scores``). Pure functions; the retriever does the I/O.

A document row reuses its first chunk's id and payload, so a hit on it is a chunk hit like any other (its
text stays the chunk's, for citations) and filters see the same fields; its ``index_text`` is the whole
document as the chunks cover it, each chunk's context line once per run and overlaps left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.types import ChunkRecord, Hit

DOCUMENT_INDEX_SUFFIX = "__documents"


def document_index(index: str) -> str:
    """The keyword index that holds the document rows of ``index`` (never a vector index)."""
    return f"{index}{DOCUMENT_INDEX_SUFFIX}"


def is_document_index(index: str) -> bool:
    """Whether keyword index ``index`` holds document rows (``document_index`` named it)."""
    return index.endswith(DOCUMENT_INDEX_SUFFIX)


def overlap_length(previous: str, following: str) -> int:
    """Length of the longest suffix of ``previous`` that starts ``following`` (the chunker's overlap)."""
    if not previous or not following:
        return 0
    start = max(0, len(previous) - len(following))
    while True:
        start = previous.find(following[0], start)
        if start < 0:
            return 0
        if following.startswith(previous[start:]):
            return len(previous) - start
        start += 1


def _context(record: ChunkRecord) -> str:
    """The context line ``index_text`` puts before the chunk text (title and heading path), or ''."""
    searchable = record.searchable_text
    if searchable != record.text and searchable.endswith(record.text):
        return searchable[: len(searchable) - len(record.text)].strip()
    return ""


def document_text(chunks: Sequence[ChunkRecord]) -> str:
    """One document's text from its chunks in reading order: a context line whenever it changes, then each
    chunk without the part the previous chunk already holds."""
    parts: list[str] = []
    context = previous = ""
    section: tuple[object, object] | None = None
    for chunk in chunks:
        line = _context(chunk)
        if line and line != context:
            parts.append(line)
            context = line
        # Chunks overlap only within a section (same page and heading): elsewhere a chance match is text.
        here = (chunk.payload.get("page"), chunk.payload.get("heading"))
        cut = overlap_length(previous, chunk.text) if here == section else 0
        parts.append(chunk.text[cut:])
        previous, section = chunk.text, here
    return "\n".join(part for part in parts if part)


def document_records(records: Sequence[ChunkRecord]) -> list[ChunkRecord]:
    """One row per document among ``records`` (which must hold all of each document's chunks): the first
    chunk's id, text and payload, the document's text to match on. Records without a ``document_id`` in
    their payload are left out (they have no document to stand for)."""
    by_document: dict[str, list[ChunkRecord]] = {}
    for record in records:
        document_id = record.payload.get("document_id")
        if document_id is not None:
            by_document.setdefault(str(document_id), []).append(record)
    rows = []
    for chunks in by_document.values():
        ordered = sorted(chunks, key=lambda r: int(r.payload.get("ordinal") or 0))
        first = ordered[0]
        rows.append(ChunkRecord(id=first.id, text=first.text, payload=first.payload, index_text=document_text(ordered)))
    return rows


def with_document_scores(chunk_hits: Sequence[Hit], document_hits: Sequence[Hit], weight: float) -> list[Hit]:
    """Chunk hits re-scored as ``chunk + weight * document field score`` of their document, best first.

    A document found by its field but by none of its chunks enters with its document row (its first chunk)
    at ``weight * field score``. Chunks of documents the field did not return keep their own score. Ties
    keep the chunk list's order, then the document list's.
    """
    field = {str(hit.payload.get("document_id", hit.id)): hit for hit in document_hits}
    scored: dict[str, Hit] = {}
    for hit in chunk_hits:
        document = field.get(str(hit.payload.get("document_id", hit.id)))
        bonus = weight * document.score if document is not None else 0.0
        scored[hit.id] = Hit(id=hit.id, score=hit.score + bonus, payload=hit.payload)
    found = {str(hit.payload.get("document_id", hit.id)) for hit in chunk_hits}
    for document_id, hit in field.items():
        if document_id not in found and hit.id not in scored:
            scored[hit.id] = Hit(id=hit.id, score=weight * hit.score, payload=hit.payload)
    return sorted(scored.values(), key=lambda hit: -hit.score)
