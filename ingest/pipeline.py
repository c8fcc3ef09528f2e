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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.collections import bump_content_version
from core.config import Settings
from core.db import Database
from core.errors import DocumentUnreadable, RagError
from core.ids import chunk_id, new_id
from core.metrics import CHUNKS_INGESTED, DOCUMENTS_INGESTED, INGEST_FAILURES, observe_stages
from core.models import Chunk, Collection, Document, DocumentStatus, index_name
from core.types import ChunkRecord
from ingest.chunking import ChunkDraft, chunk_sections
from ingest.parsers.base import ParseOptions, Section
from ingest.sandbox import parse_isolated
from retrieval.embedding import Embedder
from retrieval.retriever import DEFAULT_PROFILE, PROFILE_FIELDS, HybridRetriever, IndexProfile

log = logging.getLogger(__name__)

SKIPPED = "skipped"
# A claim older than this is presumed dead (its worker crashed); the longest task may run this long.
CLAIM_LEASE_S = 1860
STALE = "stale"
# A concurrent run of the same document committed first: its chunks (same deterministic ids) are the ones in
# the indexes now, so this run must leave them there. Reported to callers as ``skipped``.
DONE_ELSEWHERE = "done elsewhere"
# Settings a collection (through a re-index) may override for its own documents.
COLLECTION_OPTIONS = (
    "chunk_size_tokens",
    "chunk_overlap_tokens",
    "embedding_model",
    "embedding_backend",
    "keyword_tokenizer",
)


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
    first_write: bool = False
    """No earlier run can have written this document's chunks to ``index`` (its first claim), so the
    pre-write delete of leftovers is skipped: it cost 6.5 thread-seconds per 1,000 new documents."""

    @property
    def index(self) -> str:
        return index_name(self.collection, self.version)


def effective_settings(settings: Settings, options: dict[str, Any] | None) -> Settings:
    """Only options that differ make a new ``Settings``: every collection records its profile, which mostly
    equals the process settings, and validating a copy per document cost 2.8 s per 1,000 uploads."""
    overrides = {k: v for k, v in (options or {}).items() if k in COLLECTION_OPTIONS and getattr(settings, k) != v}
    return Settings.model_validate({**settings.model_dump(), **overrides}) if overrides else settings


def profile_options(settings: Settings) -> dict[str, Any]:
    """Recorded on every new collection: its indexes must keep being searched the way they were built,
    whatever the process settings say later (changing that takes a re-index)."""
    return {key: getattr(settings, key) for key in PROFILE_FIELDS}


def index_profile(settings: Settings, options: dict[str, Any] | None) -> IndexProfile:
    return IndexProfile.from_settings(effective_settings(settings, options))


def parse_options(settings: Settings) -> ParseOptions:
    return ParseOptions(
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
) -> Prepared:
    """Parse and chunk one stored original. Raises ``DocumentUnreadable`` for files without usable text."""
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
        options=parse_options(settings),
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
    )


def claimable_by(token: str, now: datetime) -> ColumnElement[bool]:
    """Documents a run holding ``token`` may take: not finished, and not held by another live run (claimed
    under another token within the longest a task may run)."""
    return and_(
        Document.status.not_in((DocumentStatus.indexed, DocumentStatus.failed)),
        or_(
            Document.status != DocumentStatus.processing,
            Document.claim_token.is_(None),
            Document.claim_token == token,
            Document.started_at.is_(None),
            Document.started_at < now - timedelta(seconds=CLAIM_LEASE_S),
        ),
    )


def claimable(db: Database, document_ids: Sequence[str], token: str) -> list[str]:
    """Which of ``document_ids`` a run with ``token`` could claim now (a read: ``claim`` is what takes them).

    Most tasks of a bulk load find their documents already taken into an earlier task's batch; this lets
    them skip the claim and the pipeline for those (and stop early when no queued peers are left either).
    """
    if not document_ids:
        return []
    with db.session() as session:
        found = set(
            session.scalars(
                select(Document.id).where(Document.id.in_(document_ids), claimable_by(token, datetime.now(UTC)))
            )
        )
    return [document_id for document_id in document_ids if document_id in found]


def claim(db: Database, document_ids: Sequence[str], token: str) -> dict[str, tuple[Document, Collection]]:
    """Mark the documents ``processing`` under ``token``. Leaves out those that are gone, finished, or held by
    another live task run (a duplicate, or a peer taken into someone else's batch).

    The conditional UPDATE is the claim, so two runs never both take a document. (Reading the rows and then
    writing them let a task and another task's peer batch both claim one; the loser's commit then found
    the winner's chunk rows.)
    """
    if not document_ids:
        return {}
    now = datetime.now(UTC)
    with db.session() as session:
        taken = session.scalars(
            update(Document)
            .where(Document.id.in_(document_ids), claimable_by(token, now))
            .values(status=DocumentStatus.processing, claim_token=token, attempts=Document.attempts + 1, started_at=now)
            .returning(Document.id)
        ).all()
        if not taken:
            return {}
        documents = session.scalars(select(Document).where(Document.id.in_(taken))).all()
        collection_ids = {document.collection_id for document in documents}
        collections = {c.id: c for c in session.scalars(select(Collection).where(Collection.id.in_(collection_ids)))}
        claimed = {document.id: (document, collections[document.collection_id]) for document in documents}
        session.flush()
        session.expunge_all()
    return claimed


def claim_queued_peers(db: Database, own: Sequence[str], limit: int, token: str) -> list[str]:
    """Atomically take up to ``limit`` other queued documents, so one task embeds them all in shared batches.

    Their own tasks still arrive later and find them taken or finished (skipped). The conditional UPDATE
    makes two workers never take the same document.
    """
    if limit <= 0:
        return []
    with db.session() as session:
        candidates = session.scalars(
            select(Document.id)
            .where(Document.status == DocumentStatus.queued, Document.id.not_in(own))
            .order_by(Document.created_at)
            .limit(limit)
        ).all()
        if not candidates:
            return []
        taken = session.scalars(
            update(Document)
            .where(Document.id.in_(candidates), Document.status == DocumentStatus.queued)
            .values(status=DocumentStatus.processing, started_at=datetime.now(UTC), claim_token=token)
            .returning(Document.id)
        ).all()
        return list(taken)


def release_claims(db: Database, document_ids: Sequence[str], token: str) -> list[str]:
    """Hand documents this run still holds back to the queue (after a failed batch). Returns their ids."""
    if not document_ids:
        return []
    with db.session() as session:
        released = session.scalars(
            update(Document)
            .where(
                Document.id.in_(document_ids),
                Document.claim_token == token,
                Document.status == DocumentStatus.processing,
            )
            .values(status=DocumentStatus.queued, claim_token=None, queued_at=datetime.now(UTC))
            .returning(Document.id)
        ).all()
        return list(released)


def mark_failed(db: Database, document_id: str, message: str, reason: str = "error", token: str | None = None) -> None:
    """``reason`` labels the failure metric: unreadable (the file), unavailable (a store), error (a bug).

    With ``token``, only while the run holding it still has the document: another run may have claimed
    or indexed it since (a task's crash must not fail what it no longer holds).
    """
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is not None and token is not None:
            held = document.status == DocumentStatus.processing and document.claim_token == token
            document = document if held else None
        if document is not None:
            document.status = DocumentStatus.failed
            document.error = message
            document.finished_at = datetime.now(UTC)
    if document is not None:
        INGEST_FAILURES.labels(reason).inc()


def prepare(
    db: Database, retriever: HybridRetriever, settings: Settings, document_ids: Sequence[str], token: str
) -> tuple[list[Prepared], dict[str, str]]:
    """Claim, parse and chunk for the serving version. Documents with nothing to embed get a status instead:
    ``skipped`` (gone or already finished: a duplicate task) or ``failed`` (unreadable; recorded)."""
    claimed = claim(db, document_ids, token)
    items: list[Prepared] = []
    statuses = {document_id: SKIPPED for document_id in document_ids if document_id not in claimed}
    for document, collection in claimed.values():
        try:
            item = build(
                document,
                collection.name,
                collection.index_version,
                effective_settings(settings, collection.options),
                retriever,
                follow_serving=True,
            )
        except RagError as exc:
            if exc.status_code >= 500:
                raise
            mark_failed(db, document.id, exc.message, reason="unreadable")
            statuses[document.id] = DocumentStatus.failed
            continue
        # Chunks are only ever written after a claim, and every claim counts an attempt.
        items.append(replace(item, first_write=document.attempts == 1))
    return items, statuses


def write_indexes(retriever: HybridRetriever, items: Sequence[Prepared]) -> None:
    """Embed every item's chunks in shared batches and write both indexes, one index version at a time."""
    by_index: dict[str, list[Prepared]] = {}
    for item in items:
        by_index.setdefault(item.index, []).append(item)
    for target, group in by_index.items():
        started = time.perf_counter()
        for item in group:
            if not item.first_write:
                retriever.delete_document(target, item.document.id)
        retriever.index_records(target, [r for item in group for r in item.records], group[0].profile)
        elapsed_ms = (time.perf_counter() - started) * 1000
        observe_stages({"index": elapsed_ms})
        log.info(
            "chunks embedded and written",
            extra={
                "step": "embed+index",
                "index": target,
                "documents": len(group),
                "chunks": sum(len(item.records) for item in group),
                "duration_ms": round(elapsed_ms, 1),
            },
        )


def store_chunks(session: Any, items: Sequence[Prepared]) -> None:
    """All the items' chunk rows in one INSERT statement (ORM objects cost three times the CPU); an item's
    rows from an earlier run are replaced."""
    for item in items:
        if not item.first_write:  # a first claim has no rows from an earlier run to replace
            session.execute(
                delete(Chunk).where(Chunk.document_id == item.document.id, Chunk.index_version == item.version)
            )
    rows = [
        {
            "id": record.id,
            "index_version": item.version,
            "document_id": item.document.id,
            "ordinal": draft.ordinal,
            "page": draft.page,
            "token_count": draft.token_count,
            "text": draft.text,
        }
        for item in items
        for record, draft in zip(item.records, item.drafts, strict=True)
    ]
    if rows:
        session.execute(insert(Chunk), rows)


def mark_indexed(item: Prepared, row: Document | None, collection: Collection | None) -> str:
    """The item's outcome; ``indexed`` updates ``row``, whose chunk rows the caller stores. ``row`` and
    ``collection`` are as read in the committing transaction (``None``: deleted meanwhile)."""
    if row is None:
        return SKIPPED
    if item.follow_serving and (collection is None or collection.index_version != item.version):
        return STALE  # checked first: what this run wrote into the old version must go, whoever won
    if row.status == DocumentStatus.indexed:
        return DONE_ELSEWHERE
    row.status = DocumentStatus.indexed
    row.error = None
    row.claim_token = None
    row.chunk_count = len(item.records)
    row.page_count = item.page_count
    row.finished_at = datetime.now(UTC)
    return DocumentStatus.indexed


def commit_indexed(db: Database, items: Sequence[Prepared]) -> dict[str, str]:
    """Chunk rows and ``indexed`` land in one transaction: a document is never half-indexed and ``indexed``.

    One transaction for the whole batch (one per document cost 3 ms each). Each document's outcome is
    ``skipped`` when it was deleted meanwhile, ``done elsewhere`` when a concurrent run of it committed first
    (same deterministic ids; a batch that trips over its chunk rows commits again one document at a time),
    and ``stale`` when a re-index switched the serving version while this upload was embedding (the caller
    indexes it again, into the new version).
    """
    if not items:
        return {}
    try:
        with db.session() as session:
            ids = [item.document.id for item in items]
            # Held here: the session's identity map keeps rows only while something references them, and
            # a get() that misses it costs a SELECT per document.
            rows = {row.id: row for row in session.scalars(select(Document).where(Document.id.in_(ids)))}
            wanted = {row.collection_id for row in rows.values()}
            collections = {c.id: c for c in session.scalars(select(Collection).where(Collection.id.in_(wanted)))}
            outcomes = {}
            for item in items:
                row = rows.get(item.document.id)
                collection = collections.get(row.collection_id) if row is not None else None
                outcomes[item.document.id] = mark_indexed(item, row, collection)
            store_chunks(session, [item for item in items if outcomes[item.document.id] == DocumentStatus.indexed])
            changed = {row.collection_id for row in rows.values() if outcomes[row.id] == DocumentStatus.indexed}
            for collection_id in sorted(changed):
                bump_content_version(session, collection_id)
        return outcomes
    except IntegrityError:
        if len(items) > 1:
            return {k: v for item in items for k, v in commit_indexed(db, [item]).items()}
        with db.session() as session:
            row = session.get(Document, items[0].document.id)
            if row is None:  # deleted between the read and the chunk rows' insert (a foreign-key violation)
                return {items[0].document.id: SKIPPED}
            if row.status == DocumentStatus.indexed:
                return {row.id: DONE_ELSEWHERE}
        raise


def index_batch(
    db: Database, retriever: HybridRetriever, batch: Sequence[Prepared]
) -> tuple[dict[str, str], list[str], int]:
    """Write the batch to both indexes, commit it, and settle each document's chunks by its outcome.

    Returns the final statuses, the documents to index again (stale: a re-index switched versions
    meanwhile) and how many chunks were indexed.
    """
    write_indexes(retriever, batch)
    outcomes = commit_indexed(db, batch)
    statuses: dict[str, str] = {}
    pending: list[str] = []
    chunks = 0
    for item in batch:
        outcome = outcomes[item.document.id]
        if outcome == DocumentStatus.indexed:
            chunks += len(item.records)
        elif outcome != DONE_ELSEWHERE:  # gone, or written into a version that no longer serves
            retriever.delete_document(item.index, item.document.id)
        if outcome == STALE:
            pending.append(item.document.id)
        else:
            statuses[item.document.id] = SKIPPED if outcome == DONE_ELSEWHERE else outcome
    return statuses, pending, chunks


def index_documents(
    db: Database,
    retriever: HybridRetriever,
    settings: Settings,
    document_ids: Sequence[str],
    token: str | None = None,
) -> dict[str, str]:
    """Index documents into their collection's serving version, embedding their chunks together.

    Returns each document's final status (``indexed``, ``failed`` or ``skipped``).
    """
    started = time.perf_counter()
    token = token or new_id()
    statuses: dict[str, str] = {}
    pending = list(document_ids)
    chunks = 0
    for _ in range(3):  # a re-index switch during the run makes items stale at most once or twice
        batch, unprepared = prepare(db, retriever, settings, pending, token)
        statuses.update(unprepared)
        done, pending, indexed_chunks = index_batch(db, retriever, batch)
        statuses.update(done)
        chunks += indexed_chunks
        if not pending:
            break
    for document_id in pending:
        message = "The collection was re-indexed repeatedly meanwhile; upload it again."
        mark_failed(db, document_id, message, reason="unavailable")
        statuses[document_id] = DocumentStatus.failed
    DOCUMENTS_INGESTED.inc(sum(status == DocumentStatus.indexed for status in statuses.values()))
    CHUNKS_INGESTED.inc(chunks)
    log.info(
        "documents indexed",
        extra={
            "documents": len(document_ids),
            "chunks": chunks,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return statuses
