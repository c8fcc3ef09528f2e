"""Zero-downtime re-index: build the next index version from the stored originals, then switch.

Queries keep reading the serving version throughout. The switch is one SQL transaction that bumps the
collection's ``index_version`` (queries resolve the physical index name from it), so readers see the old
version or the new one, never a mix. Uploads that finish during the build are caught up before the switch;
uploads still embedding at the switch notice it at commit and re-index into the new version. Any failure
leaves the serving version untouched and drops the half-built one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.collections import get_collection
from core.config import Settings
from core.db import Database
from core.errors import BadInput, Conflict, NotFound, RagError
from core.models import (
    ACTIVE_JOB,
    Chunk,
    Collection,
    Document,
    DocumentStatus,
    JobStatus,
    ReindexJob,
    index_name,
)
from ingest.commit import store_chunks, write_indexes
from ingest.profile import COLLECTION_OPTIONS, effective_settings
from ingest.records import Prepared, build
from retrieval.retriever import HybridRetriever, IndexProfile

log = logging.getLogger(__name__)

BATCH = 64
SWITCH_ATTEMPTS = 5


class ReindexFailed(RagError):
    status_code = 500


@dataclass(frozen=True)
class JobView:
    job: ReindexJob
    collection: str

    @property
    def eta_s(self) -> float | None:
        job = self.job
        if job.status != JobStatus.running or not job.started_at or not job.done:
            return None
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
        elapsed = (datetime.now(UTC) - started).total_seconds()
        return round(elapsed / job.done * max(job.total - job.done, 0), 1)


def validate_options(
    settings: Settings,
    options: dict[str, Any],
    recorded: dict[str, Any] | None = None,
    retriever: HybridRetriever | None = None,
) -> dict[str, Any]:
    """Refuse what the job would only fail on later; a new embedding model is loaded now (seconds, once).

    ``recorded``: the collection's options, which the job merges ``options`` into."""
    unknown = set(options) - set(COLLECTION_OPTIONS)
    if unknown:
        raise BadInput(f"Unknown re-index option(s) {sorted(unknown)}; allowed: {list(COLLECTION_OPTIONS)}.")
    try:
        profile = IndexProfile.from_settings(effective_settings(settings, {**(recorded or {}), **options}))
    except ValueError as exc:
        raise BadInput(f"Invalid re-index options: {exc}") from exc
    if retriever is not None and {"embedding_model", "embedding_backend"} & set(options):
        try:
            retriever.embedder_for(profile).embed_query("probe")
        except Exception as exc:
            log.warning("re-index embedding model does not load", extra={"model": profile.embedding_model})
            raise BadInput(
                f"Embedding model {profile.embedding_model!r} ({profile.embedding_backend}) could not be loaded "
                f"({type(exc).__name__}); give a local model folder or a name this server can load offline."
            ) from exc
    return options


def _refuse_while_active(session: Session, collection: Collection) -> None:
    active = session.scalar(
        select(ReindexJob.id).where(ReindexJob.collection_id == collection.id, ReindexJob.status.in_(ACTIVE_JOB))
    )
    if active is not None:
        raise Conflict(f"Collection {collection.name!r} is already being re-indexed (job {active}).")


def start_reindex(
    db: Database,
    settings: Settings,
    collection_name: str,
    options: dict[str, Any],
    enqueue: Callable[[str], None],
    retriever: HybridRetriever | None = None,
) -> ReindexJob:
    """Queue a re-index; 409 while another one of the same collection is queued or running."""
    collection = get_collection(db, collection_name)
    with db.session() as session:  # before a model load: the cheap refusals first
        _refuse_while_active(session, collection)
    validate_options(settings, options, collection.options, retriever)
    with db.session() as session:
        session.execute(select(Collection).where(Collection.id == collection.id).with_for_update())
        _refuse_while_active(session, collection)
        highest = session.scalar(
            select(func.max(ReindexJob.target_version)).where(ReindexJob.collection_id == collection.id)
        )
        total = session.scalar(
            select(func.count())
            .select_from(Document)
            .where(Document.collection_id == collection.id, Document.status == DocumentStatus.indexed)
        )
        job = ReindexJob(
            collection_id=collection.id,
            source_version=collection.index_version,
            target_version=max(collection.index_version, highest or 0) + 1,
            options={**(collection.options or {}), **options},
            total=total or 0,
        )
        session.add(job)
    enqueue(job.id)
    return job


def get_job(db: Database, job_id: str) -> JobView:
    with db.session() as session:
        row = session.execute(
            select(ReindexJob, Collection.name)
            .join(Collection, Collection.id == ReindexJob.collection_id)
            .where(ReindexJob.id == job_id)
        ).first()
        if row is None:
            raise NotFound(f"Re-index job {job_id!r} does not exist.")
        return JobView(job=row[0], collection=row[1])


def unfinished_job_ids(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(ReindexJob.id).where(ReindexJob.status.in_(ACTIVE_JOB))))


def live_versions(db: Database, collection_id: str) -> list[int]:
    """The serving version plus any being built: deletes must reach all of them."""
    with db.session() as session:
        collection = session.get(Collection, collection_id)
        if collection is None:
            return []
        building = session.scalars(
            select(ReindexJob.target_version).where(
                ReindexJob.collection_id == collection_id, ReindexJob.status.in_(ACTIVE_JOB)
            )
        ).all()
        return [collection.index_version, *building]


def _update_job(db: Database, job_id: str, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(ReindexJob).where(ReindexJob.id == job_id).values(**values))


def _pending_documents(db: Database, collection_id: str, done: set[str]) -> list[Document]:
    with db.session() as session:
        rows = session.scalars(
            select(Document)
            .where(Document.collection_id == collection_id, Document.status == DocumentStatus.indexed)
            .order_by(Document.created_at, Document.id)
        ).all()
        for row in rows:
            session.expunge(row)
        return [row for row in rows if row.id not in done]


def _build_batch(
    documents: Sequence[Document], collection: Collection, job: ReindexJob, settings: Settings, retriever
) -> tuple[list[Prepared], list[dict[str, str]]]:  # type: ignore[no-untyped-def]
    items: list[Prepared] = []
    errors: list[dict[str, str]] = []
    for document in documents:
        try:
            items.append(
                build(
                    document,
                    collection.name,
                    job.target_version,
                    settings,
                    retriever,
                    follow_serving=False,
                )
            )
        except RagError as exc:
            errors.append({"document_id": document.id, "filename": document.filename, "error": exc.message})
    return items, errors


def _store_batch(db: Database, items: Sequence[Prepared]) -> None:
    with db.session() as session:
        existing = set(session.scalars(select(Document.id).where(Document.id.in_([i.document.id for i in items]))))
        store_chunks(session, [item for item in items if item.document.id in existing])


def _switch(db: Database, job: ReindexJob, collection_id: str, done: set[str]) -> bool:
    """Atomically serve the new version. ``False`` when documents were indexed meanwhile (catch up first)."""
    with db.session() as session:
        collection = session.scalars(select(Collection).where(Collection.id == collection_id).with_for_update()).one()
        if collection.index_version != job.source_version:
            raise ReindexFailed("The collection's serving version changed during the re-index.")
        indexed = set(
            session.scalars(
                select(Document.id).where(
                    Document.collection_id == collection_id, Document.status == DocumentStatus.indexed
                )
            )
        )
        if indexed - done:
            return False
        collection.index_version = job.target_version
        collection.content_version += 1
        collection.options = job.options
        document_ids = select(Document.id).where(Document.collection_id == collection_id)
        session.execute(
            delete(Chunk).where(Chunk.document_id.in_(document_ids), Chunk.index_version != job.target_version)
        )
        counts = dict(
            session.execute(
                select(Chunk.document_id, func.count())
                .where(Chunk.document_id.in_(document_ids), Chunk.index_version == job.target_version)
                .group_by(Chunk.document_id)
            ).all()
        )
        for document in session.scalars(select(Document).where(Document.id.in_(counts))):
            document.chunk_count = counts[document.id]
        row = session.get(ReindexJob, job.id)
        assert row is not None
        row.status = JobStatus.done
        row.finished_at = datetime.now(UTC)
    return True


def _discard_target(db: Database, retriever: HybridRetriever, collection: Collection, job: ReindexJob) -> None:
    retriever.drop_index(index_name(collection.name, job.target_version))
    with db.session() as session:
        document_ids = select(Document.id).where(Document.collection_id == collection.id)
        session.execute(
            delete(Chunk).where(Chunk.document_id.in_(document_ids), Chunk.index_version == job.target_version)
        )


def run_reindex(
    db: Database,
    retriever: HybridRetriever,
    settings: Settings,
    job_id: str,
    drop_later: Callable[[str], None],
    on_progress: Callable[[int, int], None] | None = None,
) -> str:
    """Build, catch up, switch, then hand the old version to ``drop_later``. Restarts from scratch when
    resumed after a crash (the half-built version is dropped first), so running it twice is safe."""
    view = get_job(db, job_id)
    job = view.job
    if job.status not in ACTIVE_JOB:
        return job.status
    collection = get_collection(db, view.collection)
    _update_job(
        db,
        job_id,
        status=JobStatus.running,
        started_at=datetime.now(UTC),
        done=0,
        errors=[],
        attempts=job.attempts + 1,
    )
    job_settings = effective_settings(settings, job.options)
    try:
        _discard_target(db, retriever, collection, job)
        done: set[str] = set()
        for _ in range(SWITCH_ATTEMPTS):
            while pending := _pending_documents(db, collection.id, done):
                for start in range(0, len(pending), BATCH):
                    batch = pending[start : start + BATCH]
                    items, errors = _build_batch(batch, collection, job, job_settings, retriever)
                    if errors:
                        _update_job(db, job_id, errors=errors)
                        raise ReindexFailed(f"{len(errors)} document(s) could not be re-indexed.")
                    write_indexes(retriever, items)
                    _store_batch(db, items)
                    done.update(d.id for d in batch)
                    total = len(done) + len(pending) - start - len(batch)
                    _update_job(db, job_id, done=len(done), total=total)
                    if on_progress is not None:
                        on_progress(len(done), total)
            if _switch(db, job, collection.id, done):
                break
        else:
            raise ReindexFailed("Uploads kept arriving faster than the re-index could catch up; try again.")
    except Exception as exc:
        message = exc.message if isinstance(exc, RagError) else f"{type(exc).__name__} during re-index"
        log.exception("re-index failed", extra={"job_id": job_id, "collection": collection.name})
        _discard_target(db, retriever, collection, job)
        _update_job(db, job_id, status=JobStatus.failed, finished_at=datetime.now(UTC))
        with db.session() as session:
            row = session.get(ReindexJob, job_id)
            if row is not None:
                row.errors = [*(row.errors or []), {"error": message}]
        return JobStatus.failed
    drop_later(index_name(collection.name, job.source_version))
    log.info(
        "re-index switched",
        extra={"job_id": job_id, "collection": collection.name, "version": job.target_version},
    )
    return JobStatus.done
