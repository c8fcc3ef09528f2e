"""Claims: which indexing run holds which document.

A run marks the documents it takes ``processing`` under its token with a conditional UPDATE, so two runs never
both take one. A claim older than ``CLAIM_LEASE_S`` is presumed dead (its worker crashed) and may be taken
over; whatever a run does to a document it no longer holds (a failure, a release) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update

from core.db import Database
from core.metrics import INGEST_FAILURES
from core.models import Collection, Document, DocumentStatus

CLAIM_LEASE_S = 1860
"""The longest an ingest task may run (its time limit plus a margin): a claim older than this is dead."""


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

    The conditional UPDATE is the claim: a read followed by a write would let two runs both take a document
    (a task and another task's peer batch), and the loser's commit would then find the winner's chunk rows.
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
