"""Write and commit: embed a batch of prepared documents into both indexes, then record them ``indexed``.

The indexes are written first and the SQL transaction that stores the chunk rows is what turns a document
``indexed``, so a document is never ``indexed`` with half its chunks; a crash in between leaves it
``processing`` for start-up recovery, and writing it again overwrites the same chunk ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.collections import bump_content_version
from core.db import Database
from core.metrics import observe_stages
from core.models import Chunk, Collection, Document, DocumentStatus
from ingest.outcome import Outcome
from ingest.records import Prepared
from retrieval.retriever import HybridRetriever

log = logging.getLogger(__name__)


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


def store_chunks(session: Session, items: Sequence[Prepared]) -> None:
    """All the items' chunk rows in one INSERT statement (ORM objects would cost several times the CPU); an
    item's rows from an earlier run are replaced."""
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


def mark_indexed(item: Prepared, row: Document | None, collection: Collection | None) -> Outcome:
    """The item's outcome; ``indexed`` updates ``row``, whose chunk rows the caller stores. ``row`` and
    ``collection`` are as read in the committing transaction (``None``: deleted meanwhile)."""
    if row is None:
        return Outcome.skipped
    if item.follow_serving and (collection is None or collection.index_version != item.version):
        return Outcome.stale  # checked first: what this run wrote into the old version must go, whoever won
    if row.status == DocumentStatus.indexed:
        return Outcome.done_elsewhere
    row.status = DocumentStatus.indexed
    row.error = None
    row.claim_token = None
    row.chunk_count = len(item.records)
    row.page_count = item.page_count
    row.ocr_pages = item.ocr_pages
    row.ocr_engine = item.ocr_engine
    row.finished_at = datetime.now(UTC)
    return Outcome.indexed


def commit_indexed(db: Database, items: Sequence[Prepared]) -> dict[str, Outcome]:
    """Chunk rows and ``indexed`` land in one transaction: a document is never half-indexed and ``indexed``.

    One transaction for the whole batch, not one per document. Each document's outcome is ``skipped`` when
    it was deleted meanwhile, ``done_elsewhere`` when a concurrent run of it committed first (same
    deterministic ids; a batch that trips over its chunk rows commits again one document at a time), and
    ``stale`` when a re-index switched the serving version while this upload was embedding (the caller
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
            store_chunks(session, [item for item in items if outcomes[item.document.id] == Outcome.indexed])
            changed = {row.collection_id for row in rows.values() if outcomes[row.id] == Outcome.indexed}
            for collection_id in sorted(changed):
                bump_content_version(session, collection_id)
        return outcomes
    except IntegrityError:
        if len(items) > 1:
            return {k: v for item in items for k, v in commit_indexed(db, [item]).items()}
        with db.session() as session:
            row = session.get(Document, items[0].document.id)
            if row is None:  # deleted between the read and the chunk rows' insert (a foreign-key violation)
                return {items[0].document.id: Outcome.skipped}
            if row.status == DocumentStatus.indexed:
                return {row.id: Outcome.done_elsewhere}
        raise
