"""Index documents: claim -> parse and chunk -> embed and write both indexes -> commit ``indexed``.

Idempotent by construction: chunk ids derive from (document id, ordinal), a document's old chunks are
removed from both indexes before the new ones are written, and the status only turns ``indexed`` in the
same SQL transaction that stores the chunk rows. A crash anywhere leaves the document ``processing``, which
start-up recovery re-drives. ``index_documents`` embeds many documents' chunks in shared batches, so bulk
ingest runs the embedding model on full batches rather than on a few chunks per call.

The steps live in their own modules: ``claims`` (who holds a document), ``records`` (parse and chunk into
records), ``commit`` (write the indexes, then the rows) and ``profile`` (a collection's settings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from core.config import Settings
from core.db import Database
from core.errors import RagError
from core.ids import new_id
from core.metrics import CHUNKS_INGESTED, DOCUMENTS_INGESTED
from ingest.catalog import attachment_depth, record_attachments
from ingest.claims import claim, mark_failed
from ingest.commit import commit_indexed, write_indexes
from ingest.outcome import Outcome
from ingest.profile import effective_settings
from ingest.records import Prepared, build
from retrieval.retriever import HybridRetriever

log = logging.getLogger(__name__)

ATTEMPTS = 3
"""A re-index switch while a batch embeds makes its items stale; each switch costs one more attempt."""


def prepare(
    db: Database, retriever: HybridRetriever, settings: Settings, document_ids: Sequence[str], token: str
) -> tuple[list[Prepared], dict[str, Outcome]]:
    """Claim, parse and chunk for the serving version. Documents with nothing to embed get an outcome instead:
    ``skipped`` (gone or already finished: a duplicate task) or ``failed`` (unreadable; recorded)."""
    claimed = claim(db, document_ids, token)
    items: list[Prepared] = []
    outcomes = {document_id: Outcome.skipped for document_id in document_ids if document_id not in claimed}
    for document, collection in claimed.values():
        try:
            item = build(
                document,
                collection.name,
                collection.index_version,
                effective_settings(settings, collection.options),
                retriever,
                follow_serving=True,
                attachment_depth=attachment_depth(db, document) if document.parent_id else 0,
            )
        except RagError as exc:
            if exc.status_code >= 500:
                raise
            mark_failed(db, document.id, exc.message, reason="unreadable")
            outcomes[document.id] = Outcome.failed
            continue
        # Chunks are only ever written after a claim, and every claim counts an attempt.
        items.append(replace(item, first_write=document.attempts == 1))
    return items, outcomes


def index_batch(
    db: Database, retriever: HybridRetriever, batch: Sequence[Prepared]
) -> tuple[dict[str, Outcome], list[str], int]:
    """Write the batch to both indexes, commit it, and settle each document's chunks by its outcome.

    Returns the final outcomes, the documents to index again (stale: a re-index switched versions
    meanwhile) and how many chunks were indexed.
    """
    write_indexes(retriever, batch)
    committed = commit_indexed(db, batch)
    outcomes: dict[str, Outcome] = {}
    pending: list[str] = []
    chunks = 0
    for item in batch:
        outcome = committed[item.document.id]
        if outcome == Outcome.indexed:
            chunks += len(item.records)
        elif outcome != Outcome.done_elsewhere:  # gone, or written into a version that no longer serves
            retriever.delete_document(item.index, item.document.id)
        if outcome == Outcome.stale:
            pending.append(item.document.id)
        else:
            outcomes[item.document.id] = Outcome.skipped if outcome == Outcome.done_elsewhere else outcome
    return outcomes, pending, chunks


def index_documents(
    db: Database,
    retriever: HybridRetriever,
    settings: Settings,
    document_ids: Sequence[str],
    token: str | None = None,
) -> dict[str, Outcome]:
    """Index documents into their collection's serving version, embedding their chunks together.

    Returns each document's outcome: ``indexed``, ``failed`` or ``skipped``.
    """
    started = time.perf_counter()
    token = token or new_id()
    outcomes: dict[str, Outcome] = {}
    pending = list(document_ids)
    chunks = 0
    attached: list[str] = []
    for _ in range(ATTEMPTS):
        batch, unprepared = prepare(db, retriever, settings, pending, token)
        outcomes.update(unprepared)
        done, pending, indexed_chunks = index_batch(db, retriever, batch)
        outcomes.update(done)
        chunks += indexed_chunks
        for item in batch:
            if item.attachments and done.get(item.document.id) == Outcome.indexed:
                attached += record_attachments(db, settings, item.document, item.attachments)
        if not pending:
            break
    for document_id in pending:
        message = "The collection was re-indexed repeatedly meanwhile; upload it again."
        mark_failed(db, document_id, message, reason="unavailable")
        outcomes[document_id] = Outcome.failed
    DOCUMENTS_INGESTED.inc(sum(outcome == Outcome.indexed for outcome in outcomes.values()))
    CHUNKS_INGESTED.inc(chunks)
    log.info(
        "documents indexed",
        extra={
            "documents": len(document_ids),
            "chunks": chunks,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    if attached:  # recorded once their e-mail is indexed; their depth bounds the recursion
        outcomes.update(index_documents(db, retriever, settings, attached, token))
    return outcomes
