"""The ingest service: what the API, the workers, the CLI and the evaluation call to put documents in.

Built once per process by the composition root (``runtime.services.Services.ingest``), like the query
service. It holds the database, the retriever and the settings, so callers name only what they act on;
the work itself lives in the modules that do one thing each (``catalog``, ``pipeline``, ``claims``,
``reindex``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.collections import get_collection
from core.config import Settings
from core.db import Database
from core.errors import NotFound
from core.models import Chunk, Collection, Document, ReindexJob
from ingest import catalog, claims, reindex
from ingest.catalog import DocumentPage, Enqueue, Submission, Upload
from ingest.outcome import Outcome
from ingest.pipeline import index_documents
from ingest.reindex import JobView
from retrieval.retriever import HybridRetriever

__all__ = ["DocumentPage", "Enqueue", "IngestService", "JobView", "Submission", "Upload"]


@dataclass
class IngestService:
    db: Database
    retriever: HybridRetriever
    settings: Settings

    # Collections

    def create_collection(self, name: str) -> Collection:
        """The collection records how its indexes are built (model, tokenizer) from the settings."""
        return catalog.create_collection(self.db, name, self.settings)

    def ensure_collection(self, name: str) -> Collection:
        """The collection of that name, created when there is none."""
        try:
            return get_collection(self.db, name)
        except NotFound:
            return self.create_collection(name)

    def list_collections(self) -> list[tuple[Collection, int]]:
        """Collections with their document counts."""
        return catalog.list_collections(self.db)

    def vectors_awaiting_build(self, collection: Collection) -> int:
        """Chunks of its serving index that vector searches skip until their index build lands."""
        return self.retriever.vectors.awaiting_build(collection.index_name)

    def delete_collection(self, name: str) -> None:
        catalog.delete_collection(self.db, self.retriever, name)

    # Documents

    def submit(
        self,
        collection: str,
        uploads: Sequence[Upload],
        metadata: dict[str, Any] | None,
        enqueue: Enqueue,
        replace: bool = False,
    ) -> list[Submission]:
        """Validate every file, keep the originals, record the new documents and queue them. Same bytes ->
        same document. ``replace`` removes same-named documents with other bytes once the new ones are
        accepted; of several files with one name, the last wins, as if they had come one by one."""
        names = [upload.filename or "" for upload in uploads]
        previous = (
            {name: catalog.same_name_documents(self.db, collection, name) for name in set(names)} if replace else {}
        )
        submissions = catalog.submit_documents(self.db, self.settings, collection, uploads, metadata, enqueue)
        if replace:
            kept = {name: submission.document.id for name, submission in zip(names, submissions, strict=True)}
            for name, document_id in kept.items():
                batch = {s.document.id for n, s in zip(names, submissions, strict=True) if n == name}
                for stale in (set(previous[name]) | batch) - {document_id}:
                    self.delete_document(stale)
        return submissions

    def get_document(self, document_id: str) -> tuple[Document, str]:
        """The document and its collection's name."""
        return catalog.get_document(self.db, document_id)

    def document_chunks(self, document_id: str) -> list[Chunk]:
        """Its chunks in the serving index version, in reading order."""
        return catalog.document_chunks(self.db, document_id)

    def original_path(self, document: Document) -> Path:
        """Where its stored original is; 404 when it is gone."""
        return catalog.original_path(document)

    def retry(self, document_id: str, enqueue: Enqueue) -> Document:
        """Queue a failed document again from its stored original; 409 unless it failed."""
        return catalog.retry_document(self.db, document_id, enqueue)

    def list_documents(self, collection: str, status: str | None, limit: int, offset: int) -> DocumentPage:
        return catalog.list_documents(self.db, collection, status, limit, offset)

    def delete_document(self, document_id: str) -> None:
        """Its chunks leave every live index version, then its row goes, then its original unless shared."""
        catalog.delete_document(self.db, self.retriever, document_id)

    # Indexing, in this process

    def index(self, document_ids: Sequence[str], token: str | None = None) -> dict[str, Outcome]:
        """Index recorded documents together (shared embedding batches); each one's outcome."""
        return index_documents(self.db, self.retriever, self.settings, document_ids, token)

    def index_in_batches(
        self,
        document_ids: Sequence[str],
        progress: Callable[[int], None] = lambda done: None,
        batch_documents: int | None = None,
    ) -> None:
        """Index recorded documents ``batch_documents`` (default ``RAG_INGEST_BATCH_DOCUMENTS``) at a time, so
        their chunks share embedding batches. ``progress`` gets the size of each finished batch."""
        size = max(1, batch_documents or self.settings.ingest_batch_documents)
        for start in range(0, len(document_ids), size):
            batch = list(document_ids[start : start + size])
            self.index(batch)
            progress(len(batch))

    # What the ingest tasks need: claims held by a token, and recovery

    def claimable(self, document_ids: Sequence[str], token: str) -> list[str]:
        return claims.claimable(self.db, document_ids, token)

    def claim_queued_peers(self, own: Sequence[str], limit: int, token: str) -> list[str]:
        return claims.claim_queued_peers(self.db, own, limit, token)

    def release_claims(self, document_ids: Sequence[str], token: str) -> list[str]:
        return claims.release_claims(self.db, document_ids, token)

    def mark_failed(self, document_id: str, message: str, reason: str = "error", token: str | None = None) -> None:
        claims.mark_failed(self.db, document_id, message, reason, token)

    def stale_document_ids(self, queued_for_s: float, processing_for_s: float) -> list[str]:
        return catalog.stale_document_ids(self.db, queued_for_s, processing_for_s)

    def unfinished_document_ids(self) -> list[str]:
        return catalog.unfinished_document_ids(self.db)

    # Re-index

    def start_reindex(self, collection: str, options: dict[str, Any], enqueue: Callable[[str], None]) -> ReindexJob:
        """Queue a re-index; 409 while another one of the same collection is queued or running."""
        return reindex.start_reindex(self.db, self.settings, collection, options, enqueue, retriever=self.retriever)

    def run_reindex(
        self,
        job_id: str,
        drop_later: Callable[[str], None],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> str:
        return reindex.run_reindex(self.db, self.retriever, self.settings, job_id, drop_later, on_progress)

    def get_job(self, job_id: str) -> JobView:
        return reindex.get_job(self.db, job_id)

    def unfinished_job_ids(self) -> list[str]:
        return reindex.unfinished_job_ids(self.db)
