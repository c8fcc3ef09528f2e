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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.ids import stable_hash64
from core.types import ChunkRecord, Hit, SearchFilter
from retrieval.text_analysis import DEFAULT_TOKENIZER

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


def document_key(document_id: str) -> int:
    """``document_id``'s 64-bit key (``stable_hash64``), as tantivy's ``document_key`` fast field holds it."""
    return stable_hash64(document_id)


def document_of(hit: Hit) -> str:
    """The document a hit belongs to: its payload's ``document_id``, else its own id."""
    return str(hit.payload.get("document_id", hit.id))


@dataclass(frozen=True)
class DocumentHits:
    """The document field's best rows for one query, best first: each row's ``document_key`` and field score,
    and ``rows``, which reads the rows at some of these positions as hits (in the order asked)."""

    keys: Sequence[int]
    scores: Sequence[float]
    rows: Callable[[Sequence[int]], list[Hit]]

    @classmethod
    def of(cls, hits: Sequence[Hit]) -> DocumentHits:
        """Rows already read as hits."""
        listed = list(hits)
        keys = [document_key(document_of(hit)) for hit in listed]
        return cls(keys, [hit.score for hit in listed], lambda positions: [listed[p] for p in positions])


class DocumentRowsAsHits:
    """``KeywordIndex.search_documents`` for engines whose search reads every row it returns: a search of the
    sibling index (``document_index``) whose hits are the rows."""

    def search_documents(
        self, index: str, query: str, limit: int, flt: SearchFilter | None = None, tokenizer: str = DEFAULT_TOKENIZER
    ) -> DocumentHits:
        hits = self.search(document_index(index), query, limit, flt, tokenizer=tokenizer)  # type: ignore[attr-defined]
        return DocumentHits.of(hits)


def with_document_scores(
    chunk_hits: Sequence[Hit], documents: DocumentHits, weight: float, limit: int | None = None
) -> list[Hit]:
    """Chunk hits re-scored as ``chunk + weight * document field score`` of their document, best first, at most
    ``limit`` of them (None: all).

    A document found by its field but by none of its chunks enters with its document row (its first chunk)
    at ``weight * field score``; only the rows that make the cut are read. Chunks of documents the field did not
    return keep their own score. Ties keep the chunk list's order, then the document list's.
    """
    field: dict[int, float] = {}
    for key, score in zip(documents.keys, documents.scores, strict=True):
        field.setdefault(key, score)
    chunk_keys = [document_key(document_of(hit)) for hit in chunk_hits]
    ranked: list[tuple[float, int, int]] = [  # (score, 0 = chunk hit / 1 = document row, position)
        (hit.score + weight * field.get(key, 0.0), 0, n)
        for n, (hit, key) in enumerate(zip(chunk_hits, chunk_keys, strict=True))
    ]
    alone = set(field) - set(chunk_keys)
    for position, key in enumerate(documents.keys):
        if key in alone:
            alone.remove(key)  # a document's best row only
            ranked.append((weight * documents.scores[position], 1, position))
    ranked.sort(key=lambda entry: (-entry[0], entry[1], entry[2]))
    kept = ranked[:limit] if limit is not None else ranked
    rows = iter(documents.rows([position for _, kind, position in kept if kind]))
    hits = []
    for score, kind, position in kept:
        source = next(rows) if kind else chunk_hits[position]
        hits.append(Hit(id=source.id, score=score, payload=source.payload))
    return hits
