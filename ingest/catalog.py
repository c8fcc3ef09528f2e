"""The catalogue: collections and documents as SQL rows, and the stored originals they index from.

Nothing here knows about HTTP or Celery: submitting a document takes an ``enqueue`` callable that is
called only after the document row is committed, so a worker never sees a row that does not exist yet.
Callers outside ``ingest`` reach these through ``ingest.service.IngestService``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError

from core.collections import bump_content_version, collection_in, get_collection
from core.config import Settings
from core.db import Database
from core.errors import BadInput, Conflict, NotFound, RagError, TooLarge, UnsupportedType
from core.ids import new_id, sha256_hex
from core.jsonsafe import check_json
from core.models import UNFINISHED, Chunk, Collection, Document, DocumentStatus, index_name
from ingest import ocr
from ingest.parsers.base import Attachment
from ingest.parsers.detect import detect_kind
from ingest.profile import profile_options
from ingest.reindex import live_versions
from retrieval.retriever import HybridRetriever

COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
Enqueue = Callable[[Sequence[str]], None]  # document ids, queued as one unit


def create_collection(db: Database, name: str, settings: Settings) -> Collection:
    """The collection records how its indexes are built (model, tokenizer) from ``settings``."""
    if not COLLECTION_NAME.fullmatch(name):
        raise BadInput(
            "Collection names use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit."
        )
    try:
        with db.session() as session:
            collection = Collection(name=name, options=profile_options(settings))
            session.add(collection)
            session.flush()
            return collection
    except IntegrityError as exc:
        raise Conflict(f"Collection {name!r} already exists.") from exc


def list_collections(db: Database) -> list[tuple[Collection, int]]:
    """Collections with their document counts."""
    with db.session() as session:
        counts = dict(
            session.execute(select(Document.collection_id, func.count()).group_by(Document.collection_id)).all()
        )
        collections = session.scalars(select(Collection).order_by(Collection.name)).all()
        return [(c, counts.get(c.id, 0)) for c in collections]


def safe_filename(filename: str | None) -> str:
    """Keep the base name only, printable characters only: names end up in citations and logs."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:255] or "upload"


def validate_upload(
    settings: Settings, filename: str | None, data: bytes, declared_type: str | None
) -> tuple[str, str]:
    """Size and sniffed type, before anything is stored. Returns the safe filename and the parser kind."""
    if len(data) > settings.max_upload_bytes:
        raise TooLarge(
            f"The file is {len(data) / 1e6:.1f} MB; the limit is {settings.max_upload_mb:g} MB (RAG_MAX_UPLOAD_MB)."
        )
    name = safe_filename(filename)
    kind = detect_kind(data, name, declared_type)
    if kind == "image" and (settings.ocr == "off" or not ocr.available()):
        raise UnsupportedType(
            f"{name} is an image, and OCR is off on this server (RAG_OCR={settings.ocr}, engines installed: "
            f"{', '.join(ocr.available()) or 'none'}); upload a file with a text layer."
        )
    return name, kind


@dataclass(frozen=True)
class Submission:
    document: Document
    created: bool


@dataclass(frozen=True)
class Upload:
    filename: str | None
    data: bytes
    declared_type: str | None = None


def submit_documents(
    db: Database,
    settings: Settings,
    collection_name: str,
    uploads: Sequence[Upload],
    metadata: dict[str, Any] | None,
    enqueue: Enqueue,
) -> list[Submission]:
    """Every file is checked before any is stored; the new ones are recorded in one transaction and queued
    after it commits. Same bytes -> same document, within the request too."""
    check_json(metadata or {}, "metadata")  # every caller (API, CLI) stores only what can be served back
    with db.session() as session:  # one read transaction for the collection and the duplicate checks
        collection = collection_in(session, collection_name)
        checked = [validate_upload(settings, u.filename, u.data, u.declared_type) for u in uploads]
        digests = [sha256_hex(u.data) for u in uploads]
        known = {
            d.sha256: d
            for d in session.scalars(
                select(Document).where(Document.collection_id == collection.id, Document.sha256.in_(set(digests)))
            )
        }
    created: dict[str, Document] = {}
    for upload, (name, kind), digest in zip(uploads, checked, digests, strict=True):
        if digest not in known and digest not in created:
            created[digest] = Document(
                collection_id=collection.id,
                filename=name,
                content_type=kind,
                sha256=digest,
                size_bytes=len(upload.data),
                blob_path=str(store_blob(settings, digest, upload.data)),
                metadata_=metadata or {},
            )
    if created:
        try:
            with db.session() as session:
                session.add_all(created.values())
        except IntegrityError:
            if len(uploads) == 1:  # a concurrent upload of the same bytes won the race: return its row
                return [Submission(existing_document(db, collection.id, digests[0]), created=False)]
            return [
                submit_documents(db, settings, collection_name, [upload], metadata, enqueue)[0] for upload in uploads
            ]
    documents = {**known, **created}
    if created:
        enqueue([document.id for document in created.values()])
    submissions = []
    for digest in digests:
        new = created.pop(digest, None) is not None  # a second file with the same bytes is a duplicate
        submissions.append(Submission(documents[digest], created=new))
    return submissions


def store_blob(settings: Settings, digest: str, data: bytes) -> Path:
    """The original bytes, content-addressed: identical uploads share one file."""
    blob_path = settings.blob_dir / digest[:2] / digest
    blob_path.parent.mkdir(parents=True, exist_ok=True)
    if not blob_path.exists():
        tmp = blob_path.with_name(f"{digest}.{new_id()}.part")  # unique: identical uploads may race here
        tmp.write_bytes(data)
        os.replace(tmp, blob_path)
    return blob_path.resolve()


def existing_document(db: Database, collection_id: str, digest: str) -> Document:
    with db.session() as session:
        winner = session.scalar(
            select(Document).where(Document.collection_id == collection_id, Document.sha256 == digest)
        )
        assert winner is not None
        return winner


def get_document(db: Database, document_id: str) -> tuple[Document, str]:
    """The document and its collection's name."""
    with db.session() as session:
        row = session.execute(
            select(Document, Collection.name)
            .join(Collection, Collection.id == Document.collection_id)
            .where(Document.id == document_id)
        ).first()
        if row is None:
            raise NotFound(f"Document {document_id!r} does not exist.")
        return row[0], row[1]


def document_chunks(db: Database, document_id: str) -> list[Chunk]:
    """The document's chunks in the serving index version of its collection, in reading order."""
    with db.session() as session:
        version = select(Collection.index_version).join(Document, Document.collection_id == Collection.id)
        version = version.where(Document.id == document_id).scalar_subquery()
        return list(
            session.scalars(
                select(Chunk)
                .where(Chunk.document_id == document_id, Chunk.index_version == version)
                .order_by(Chunk.ordinal)
            )
        )


@dataclass(frozen=True)
class DocumentPage:
    items: list[Document]
    total: int


def list_documents(db: Database, collection_name: str, status: str | None, limit: int, offset: int) -> DocumentPage:
    collection = get_collection(db, collection_name)
    where = [Document.collection_id == collection.id]
    if status is not None:
        where.append(Document.status == status)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(Document).where(*where)) or 0
        items = session.scalars(
            select(Document).where(*where).order_by(Document.created_at, Document.id).limit(limit).offset(offset)
        ).all()
        return DocumentPage(items=list(items), total=total)


def delete_document(db: Database, retriever: HybridRetriever, document_id: str) -> None:
    """Its attachments go first (documents of their own), then its chunks leave every live index version,
    then the row (chunk rows cascade), then the blob.

    A worker still indexing this document finds the row gone at commit and removes what it wrote.
    """
    document, collection_name = get_document(db, document_id)
    with db.session() as session:
        attached = list(session.scalars(select(Document.id).where(Document.parent_id == document_id)))
    for child in attached:
        delete_document(db, retriever, child)
    for version in live_versions(db, document.collection_id):
        retriever.delete_document(index_name(collection_name, version), document_id)
    with db.session() as session:
        session.execute(sql_delete(Chunk).where(Chunk.document_id == document_id))
        session.execute(sql_delete(Document).where(Document.id == document_id))
        bump_content_version(session, document.collection_id)
    remove_unshared_blobs(db, [document])


def record_attachments(
    db: Database, settings: Settings, parent: Document, attachments: Sequence[Attachment]
) -> list[str]:
    """Record each attachment as a queued document of ``parent``'s collection, linked to it (``parent_id``),
    with the parent's tags; returns the ids recorded.

    The upload checks apply (size, a type this server reads); an attachment that fails them is left out, as
    the e-mail's own text says which files it carried. Bytes the collection already holds are not recorded
    again: that document stands for the attachment, as for a duplicate upload (which also makes recording
    idempotent when the e-mail is indexed again).
    """
    tags = (parent.metadata_ or {}).get("tags")
    recorded: list[str] = []
    for attachment in attachments:
        try:
            name, kind = validate_upload(settings, attachment.filename, attachment.data, None)
        except RagError:
            continue
        digest = sha256_hex(attachment.data)
        document = Document(
            collection_id=parent.collection_id,
            filename=name,
            content_type=kind,
            sha256=digest,
            size_bytes=len(attachment.data),
            blob_path=str(store_blob(settings, digest, attachment.data)),
            metadata_={"tags": list(tags)} if tags else {},
            parent_id=parent.id,
        )
        try:
            with db.session() as session:
                session.add(document)
        except IntegrityError:  # the collection holds these bytes already
            continue
        recorded.append(document.id)
    return recorded


def attachment_depth(db: Database, document: Document) -> int:
    """How deep ``document`` is attached: 0 for an upload, 1 for an upload's attachment, and so on."""
    depth, parent = 0, document.parent_id
    with db.session() as session:
        while parent is not None:
            depth += 1
            parent = session.scalar(select(Document.parent_id).where(Document.id == parent))
    return depth


def retry_document(db: Database, document_id: str, enqueue: Enqueue) -> Document:
    """Queue a failed document again from its stored original (a transient failure, or a fixed parser).

    Only ``failed`` documents: a queued or processing one is already on its way, an indexed one is done."""
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is None:
            raise NotFound(f"Document {document_id!r} does not exist.")
        if document.status != DocumentStatus.failed:
            raise Conflict(f"Document {document_id!r} is {document.status}; only a failed document can be retried.")
        document.status = DocumentStatus.queued
        document.error = None
        document.claim_token = None
        document.started_at = document.finished_at = None
        document.queued_at = datetime.now(UTC)
    enqueue([document_id])
    return document


def original_path(document: Document) -> Path:
    """The stored original bytes of a document; 404 when they are gone from the blob directory."""
    path = Path(document.blob_path)
    if not path.is_file():
        raise NotFound(f"The original of document {document.id!r} is no longer stored.")
    return path


def delete_collection(db: Database, retriever: HybridRetriever, name: str) -> None:
    collection = get_collection(db, name)
    with db.session() as session:
        documents = list(session.scalars(select(Document).where(Document.collection_id == collection.id)))
    if COLLECTION_NAME.fullmatch(name):  # a name stored before full-match validation never got an index
        for version in live_versions(db, collection.id):
            retriever.drop_index(index_name(name, version))
    with db.session() as session:
        session.execute(sql_delete(Collection).where(Collection.id == collection.id))
    remove_unshared_blobs(db, documents)


def remove_unshared_blobs(db: Database, documents: list[Document]) -> None:
    """Originals are content-addressed and may be shared across collections: remove only orphans."""
    with db.session() as session:
        for document in documents:
            same_bytes = select(func.count()).select_from(Document).where(Document.sha256 == document.sha256)
            if not session.scalar(same_bytes):
                Path(document.blob_path).unlink(missing_ok=True)


def same_name_documents(db: Database, collection_name: str, filename: str) -> list[str]:
    collection = get_collection(db, collection_name)
    with db.session() as session:
        return list(
            session.scalars(
                select(Document.id).where(
                    Document.collection_id == collection.id, Document.filename == safe_filename(filename)
                )
            )
        )


def stale_document_ids(db: Database, queued_for_s: float, processing_for_s: float) -> list[str]:
    """Documents whose task was probably lost (a broker restart without persistence, a dead worker):
    ``queued`` longer than ``queued_for_s`` since their task was sent, or ``processing`` longer than any task
    may run. Their ``queued_at`` is bumped here, so one re-drive does not trigger the next."""
    now = datetime.now(UTC)
    with db.session() as session:
        rows = session.scalars(
            select(Document).where(
                or_(
                    and_(
                        Document.status == DocumentStatus.queued,
                        Document.queued_at < now - timedelta(seconds=queued_for_s),
                    ),
                    and_(
                        Document.status == DocumentStatus.processing,
                        Document.started_at < now - timedelta(seconds=processing_for_s),
                        Document.queued_at < now - timedelta(seconds=processing_for_s),
                    ),
                )
            )
        ).all()
        for row in rows:
            row.queued_at = now
            row.claim_token = None
        return [row.id for row in rows]


def unfinished_document_ids(db: Database) -> list[str]:
    """Documents a crash or restart left behind; the SQL state is the truth, so these get re-queued.

    Their claims are released: at start-up the claims' holders are presumed dead. (Should one still run in
    another worker process, the document is indexed twice, which deterministic ids make harmless.)
    """
    now = datetime.now(UTC)
    with db.session() as session:
        rows = session.scalars(
            select(Document).where(Document.status.in_(UNFINISHED)).order_by(Document.created_at)
        ).all()
        for row in rows:
            row.claim_token = None
            row.queued_at = now
        return [row.id for row in rows]
