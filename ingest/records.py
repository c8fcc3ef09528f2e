"""Document records: one stored original read, parsed and chunked into the records both indexes store.

Chunk ids derive from (document id, ordinal), so indexing a document again overwrites its records instead of
adding to them. Payloads carry what filters (filename, tags, upload time) and citations (page, text) need.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings
from core.errors import DocumentUnreadable
from core.ids import chunk_id
from core.metrics import observe_stages
from core.models import Document, index_name
from core.types import ChunkRecord
from ingest.chunking import ChunkDraft, chunk_sections
from ingest.parsers.base import Attachment, ParseOptions, Section
from ingest.sandbox import parse_isolated
from retrieval.embedding import Embedder
from retrieval.retriever import DEFAULT_PROFILE, HybridRetriever, IndexProfile

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A parsed and chunked document, ready to embed into one index version."""

    document: Document
    collection: str
    version: int
    follow_serving: bool  # an upload follows the serving version; a re-index writes a fixed one
    drafts: list[ChunkDraft]
    records: list[ChunkRecord]
    page_count: int | None
    profile: IndexProfile = DEFAULT_PROFILE
    ocr_pages: int = 0
    ocr_engine: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    """Files inside the document (an e-mail's attachments) to record as documents of their own."""
    first_write: bool = False
    """No earlier run can have written this document's chunks to ``index`` (its first claim), so there are no
    leftovers to delete before writing."""

    @property
    def index(self) -> str:
        return index_name(self.collection, self.version)


def parse_options(settings: Settings, attachment_depth: int = 0) -> ParseOptions:
    return ParseOptions(
        attachment_depth=attachment_depth,
        max_pages=settings.max_pdf_pages,
        ocr=settings.ocr,
        ocr_dpi=settings.ocr_dpi,
        max_rows=settings.table_max_rows,
        max_columns=settings.table_max_columns,
        max_archive_mb=settings.office_max_uncompressed_mb,
        max_archive_members=settings.office_max_members,
        max_compression_ratio=settings.office_max_compression_ratio,
        max_attachment_depth=settings.email_attachment_depth,
        docx_revisions=settings.docx_revisions,
        docx_comments=settings.docx_comments,
    )


def chunk_records(
    document: Document,
    drafts: Sequence[ChunkDraft],
    title: str | None,
    embedder: Embedder | None = None,
    source_metadata: dict[str, str] | None = None,
) -> list[ChunkRecord]:
    """Payloads carry what filters (filename, tags, upload time) and citations (page, text) need; both
    searches match each chunk with its title and heading path (``index_text``). With the ``embedder`` that
    chunked them, records carry the token ids of ``index_text`` where the chunker had the chunk's.
    ``ocr`` marks text read from an image; ``source`` carries the parser's facts (an e-mail's headers)."""
    uploaded_at = document.created_at.timestamp()
    tags = list((document.metadata_ or {}).get("tags") or [])
    extra = {"source": dict(source_metadata)} if source_metadata else {}
    return [
        ChunkRecord(
            id=chunk_id(document.id, draft.ordinal),
            text=draft.text,
            index_text=embedding_text(draft, title),
            content_ids=embedding_ids(draft, title, embedder) if embedder is not None else None,
            payload={
                "document_id": document.id,
                "filename": document.filename,
                "page": draft.page,
                "ordinal": draft.ordinal,
                "heading": draft.heading,
                "tags": tags,
                "uploaded_at": uploaded_at,
                "text": draft.text,
                "ocr": draft.ocr,
                **extra,
            },
        )
        for draft in drafts
    ]


def embedding_context(draft: ChunkDraft, title: str | None) -> str:
    parts = [title] if title else []
    if draft.heading and draft.heading != title:
        parts.append(draft.heading)
    return " > ".join(parts)


def embedding_text(draft: ChunkDraft, title: str | None) -> str:
    """What both searches match on: the title and heading path give a chunk its context."""
    context = embedding_context(draft, title)
    return f"{context}\n{draft.text}" if context else draft.text


def embedding_ids(draft: ChunkDraft, title: str | None, embedder: Embedder) -> tuple[int, ...] | None:
    """The ids of ``embedding_text`` from the chunk's own (the line break between context and chunk is a word
    break, so the two tokenize apart), or ``None`` where the chunker had none."""
    if draft.token_ids is None:
        return None
    context = embedding_context(draft, title)
    if not context:
        return draft.token_ids
    prefix = embedder.context_ids(context)
    return None if prefix is None else prefix + draft.token_ids


def chunk_document(sections: Sequence[Section], embedder: Embedder, settings: Settings) -> list[ChunkDraft]:
    """Chunks sized in the embedding model's own tokens (the benchmarks chunk through this too)."""
    return chunk_sections(
        sections,
        embedder.count_tokens,
        settings.chunk_size_tokens,
        settings.chunk_overlap_tokens,
        count_spans=embedder.count_spans,
    )


def build(
    document: Document,
    collection: str,
    version: int,
    settings: Settings,
    retriever: HybridRetriever,
    follow_serving: bool,
    attachment_depth: int = 0,
) -> Prepared:
    """Parse and chunk one stored original. Raises ``DocumentUnreadable`` for files without usable text.

    ``attachment_depth``: how deep the document is attached (0: uploaded itself), which bounds how deep in
    attached e-mails attachments are still read (``RAG_EMAIL_ATTACHMENT_DEPTH``)."""
    started = time.perf_counter()
    try:
        data = Path(document.blob_path).read_bytes()
    except FileNotFoundError as exc:
        raise DocumentUnreadable("The stored original is missing; upload the file again.") from exc
    parsed = parse_isolated(
        data,
        document.content_type,
        max_pages=settings.max_pdf_pages,
        timeout_s=settings.parse_timeout_s,
        memory_mb=settings.parse_memory_mb,
        filename=document.filename,
        options=parse_options(settings, attachment_depth),
    )
    parsed_at = time.perf_counter()
    profile = IndexProfile.from_settings(settings)
    embedder = retriever.embedder_for(profile)
    drafts = chunk_document(parsed.sections, embedder, settings)
    if not drafts:
        raise DocumentUnreadable(f"{document.filename} contains no text to index.")
    timings = {"parse": (parsed_at - started) * 1000, "chunk": (time.perf_counter() - parsed_at) * 1000}
    observe_stages(timings)
    log.info(
        "document parsed",
        extra={
            "step": "parse+chunk",
            "document_id": document.id,
            "pages": parsed.page_count,
            "chunks": len(drafts),
            "timings_ms": {k: round(v, 1) for k, v in timings.items()},
        },
    )
    return Prepared(
        document=document,
        collection=collection,
        version=version,
        follow_serving=follow_serving,
        drafts=drafts,
        records=chunk_records(document, drafts, parsed.title, embedder, parsed.metadata),
        page_count=parsed.page_count,
        profile=profile,
        ocr_pages=len({section.page for section in parsed.sections if section.ocr}),
        ocr_engine=parsed.ocr_engine,
        attachments=list(parsed.attachments),
    )
