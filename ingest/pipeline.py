"""Index documents: parse -> chunk -> embed -> write both indexes -> chunk rows -> ``indexed``.

Idempotent by construction: chunk ids derive from (document id, ordinal), a document's old chunks are
removed from both indexes before the new ones are written, and the status only turns ``indexed`` in the
same SQL transaction that stores the chunk rows. A crash anywhere leaves the document ``processing``, which
start-up recovery re-drives. ``index_documents`` embeds many documents' chunks in shared batches, which is
what keeps bulk ingest close to the embedding model's raw throughput.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete

from core.config import Settings
from core.db import Database
from core.errors import DocumentUnreadable, RagError
from core.ids import chunk_id
from core.models import Chunk, Collection, Document, DocumentStatus
from core.types import ChunkRecord
from ingest.chunking import ChunkDraft, chunk_sections
from ingest.parsers import parse_document
from retrieval.retriever import HybridRetriever

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A parsed and chunked document, ready to embed."""

    document: Document
    index: str
    drafts: list[ChunkDraft]
    records: list[ChunkRecord]
    texts: list[str]
    page_count: int | None


def chunk_records(document: Document, drafts: Sequence[ChunkDraft]) -> list[ChunkRecord]:
    """Payloads carry what filters (filename, tags, upload time) and citations (page, text) need."""
    uploaded_at = document.created_at.timestamp()
    tags = list((document.metadata_ or {}).get("tags") or [])
    return [
        ChunkRecord(
            id=chunk_id(document.id, draft.ordinal),
            text=draft.text,
            payload={
                "document_id": document.id,
                "filename": document.filename,
                "page": draft.page,
                "ordinal": draft.ordinal,
                "heading": draft.heading,
                "tags": tags,
                "uploaded_at": uploaded_at,
                "text": draft.text,
            },
        )
        for draft in drafts
    ]


def embedding_text(draft: ChunkDraft, title: str | None) -> str:
    """What both indexes see: the title and heading path give a chunk its context."""
    context = " > ".join(part for part in (title, draft.heading) if part)
    return f"{context}\n{draft.text}" if context else draft.text


def claim(db: Database, document_id: str) -> tuple[Document, str] | None:
    """Mark the document ``processing``; ``None`` when it is gone or already finished (a duplicate task)."""
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is None or document.status in (DocumentStatus.indexed, DocumentStatus.failed):
            return None
        collection = session.get(Collection, document.collection_id)
        assert collection is not None
        document.status = DocumentStatus.processing
        document.attempts += 1
        document.started_at = datetime.now(UTC)
        session.flush()
        session.expunge(document)
        return document, collection.index_name


def mark_failed(db: Database, document_id: str, message: str) -> None:
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is not None:
            document.status = DocumentStatus.failed
            document.error = message
            document.finished_at = datetime.now(UTC)


SKIPPED = "skipped"


def prepare(
    db: Database, retriever: HybridRetriever, settings: Settings, document_id: str, index: str | None
) -> Prepared | str:
    """Claim, parse and chunk. Returns a status instead when there is nothing to embed: ``skipped``
    (gone or already finished: a duplicate task) or ``failed`` (the file cannot be read; recorded)."""
    claimed = claim(db, document_id)
    if claimed is None:
        return SKIPPED
    document, serving_index = claimed
    try:
        data = Path(document.blob_path).read_bytes()
        parsed = parse_document(data, document.content_type, max_pages=settings.max_pdf_pages)
        drafts = chunk_sections(
            parsed.sections,
            retriever.embedder.count_tokens,
            settings.chunk_size_tokens,
            settings.chunk_overlap_tokens,
        )
        if not drafts:
            raise DocumentUnreadable(f"{document.filename} contains no text to index.")
    except FileNotFoundError:
        mark_failed(db, document_id, "The stored original is missing; upload the file again.")
        return DocumentStatus.failed
    except RagError as exc:
        if exc.status_code >= 500:
            raise
        mark_failed(db, document_id, exc.message)
        return DocumentStatus.failed
    return Prepared(
        document=document,
        index=index or serving_index,
        drafts=drafts,
        records=chunk_records(document, drafts),
        texts=[embedding_text(d, parsed.title) for d in drafts],
        page_count=parsed.page_count,
    )


def commit_indexed(db: Database, item: Prepared) -> bool:
    """Chunk rows and the ``indexed`` status land in one transaction: never half-indexed and ``indexed``.

    Returns ``False`` when the document was deleted meanwhile (the caller takes its chunks back out).
    """
    document_id = item.document.id
    with db.session() as session:
        row = session.get(Document, document_id)
        if row is None:
            return False
        session.execute(delete(Chunk).where(Chunk.document_id == document_id))
        session.add_all(
            Chunk(
                id=record.id,
                document_id=document_id,
                ordinal=draft.ordinal,
                page=draft.page,
                token_count=draft.token_count,
                text=draft.text,
            )
            for record, draft in zip(item.records, item.drafts, strict=True)
        )
        row.status = DocumentStatus.indexed
        row.error = None
        row.chunk_count = len(item.records)
        row.page_count = item.page_count
        row.finished_at = datetime.now(UTC)
    return True


def index_documents(
    db: Database,
    retriever: HybridRetriever,
    settings: Settings,
    document_ids: Sequence[str],
    index: str | None = None,
) -> dict[str, str]:
    """Index several documents, embedding their chunks together. Returns each one's final status."""
    started = time.perf_counter()
    statuses: dict[str, str] = {}
    batch: list[Prepared] = []
    for document_id in document_ids:
        item = prepare(db, retriever, settings, document_id, index)
        if isinstance(item, str):
            statuses[document_id] = item
        else:
            batch.append(item)
    by_index: dict[str, list[Prepared]] = {}
    for item in batch:
        by_index.setdefault(item.index, []).append(item)
    for target, items in by_index.items():
        for item in items:
            retriever.delete_document(target, item.document.id)
        retriever.index_records(
            target,
            [r for item in items for r in item.records],
            [t for item in items for t in item.texts],
        )
        for item in items:
            if commit_indexed(db, item):
                statuses[item.document.id] = DocumentStatus.indexed
            else:
                retriever.delete_document(target, item.document.id)
                statuses[item.document.id] = SKIPPED
    log.info(
        "documents indexed",
        extra={
            "documents": len(document_ids),
            "chunks": sum(len(i.records) for i in batch),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return statuses


def index_document(
    db: Database, retriever: HybridRetriever, settings: Settings, document_id: str, index: str | None = None
) -> str:
    """Index one document (the worker task's body). Raises only for errors worth a retry."""
    return index_documents(db, retriever, settings, [document_id], index)[document_id]
