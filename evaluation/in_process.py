"""The eval target in this process: the platform's own services (ingest pipeline, query path, LLM)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from tqdm import tqdm

from core.collections import get_collection
from core.models import UNFINISHED, Chunk, Document, DocumentStatus
from evaluation.answer_metrics import Encode, judge_faithfulness
from evaluation.corpus import Corpus, wait_for_vector_builds
from evaluation.datasets import EvalDataset
from generation.prompt import PROMPT_VERSION
from generation.query_types import QueryRequest, QueryResult
from ingest.service import Upload
from retrieval.vector_store import vector_backend_name
from runtime.services import Services

SETTINGS_IN_REPORT = (
    "embedding_model",
    "embedding_device",
    "chunk_size_tokens",
    "chunk_overlap_tokens",
    "keyword_backend",
    "keyword_document_weight",
    "candidates",
    "fusion",
    "fusion_unit",
    "rrf_k",
    "vector_weight",
    "keyword_weight",
    "reranker_model",
    "rerank_top_m",
    "llm_backend",
    "llm_model",
    "llm_temperature",
    "llm_max_tokens",
    "llm_context_window",
    "llm_threads",
    "llm_repeat_penalty",
    "answer_mode",
    "abstain_threshold",
    "support_threshold",
    "auto_min_groundedness",
    "evidence_hits",
    "evidence_neighbours",
    "evidence_budget_words",
    "evidence_max_sentences",
    "evidence_lexical_weight",
    "evidence_rank_weight",
    "cache_exact",
    "cache_semantic",
)


def ingest_corpus(
    services: Services, dataset: EvalDataset, collection: str, batch_size: int = 256, progress: bool = True
) -> Corpus:
    """Upload every corpus document (same bytes = same document) and index those not indexed yet."""
    started = time.perf_counter()
    ingest = services.ingest
    ingest.ensure_collection(collection)
    doc_to_dataset: dict[str, list[str]] = {}
    pending: list[str] = []
    created = 0
    for document in tqdm(dataset.documents, desc="uploading", unit="doc", disable=not progress):
        upload = Upload(document.filename, document.upload_text().encode("utf-8"))
        [submission] = ingest.submit(collection, [upload], {"source_id": document.id}, lambda _ids: None)
        created += submission.created
        doc_to_dataset.setdefault(submission.document.id, []).append(document.id)
        if submission.document.status in UNFINISHED:
            pending.append(submission.document.id)
    pending = list(dict.fromkeys(pending))
    with tqdm(total=len(pending), desc="indexing", unit="doc", disable=not progress) as bar:
        ingest.index_in_batches(pending, bar.update, batch_documents=batch_size)
    row = get_collection(services.db, collection)
    build = wait_for_vector_builds(lambda: ingest.vectors_awaiting_build(row), progress)
    collection_id = row.id
    with services.db.session() as session:
        chunk_to_doc = dict(
            session.execute(
                select(Chunk.id, Chunk.document_id)
                .join(Document, Document.id == Chunk.document_id)
                .where(Document.collection_id == collection_id)
            ).all()
        )
        failed = session.execute(
            select(Document.filename, Document.error).where(
                Document.id.in_(list(doc_to_dataset)), Document.status == DocumentStatus.failed
            )
        ).all()
    ours = set(doc_to_dataset)
    summary = {
        "documents": len(dataset.documents),
        "uploads": len(doc_to_dataset),
        "created": created,
        "indexed_now": len(pending),
        "failed": len(failed),
        "failures": [f"{name}: {error}" for name, error in failed[:10]],
        "chunks": sum(1 for doc in chunk_to_doc.values() if doc in ours),
        "seconds": round(time.perf_counter() - started, 1),
        **build,
    }
    return Corpus(doc_to_dataset=doc_to_dataset, chunk_to_doc=chunk_to_doc, summary=summary)


class ServicesTarget:
    def __init__(self, services: Services) -> None:
        self.services = services

    def ingest(self, dataset: EvalDataset, collection: str, batch_size: int, progress: bool) -> Corpus:
        return ingest_corpus(self.services, dataset, collection, batch_size, progress)

    def query(self, collection: str, request: QueryRequest) -> QueryResult:
        return self.services.queries.query(collection, request)

    def default_answer_mode(self) -> str:
        return self.services.settings.answer_mode

    def has_llm(self) -> bool:
        return self.services.llm is not None

    def encoder(self) -> Encode:
        return self.services.embedder.embed_documents

    def judge(self, answer: str, sources: Sequence[str]) -> bool | None:
        llm = self.services.llm
        return None if llm is None else judge_faithfulness(llm, answer, sources)

    def settings_snapshot(self, generate: bool) -> dict[str, Any]:
        s = self.services.settings
        snapshot: dict[str, Any] = {name: getattr(s, name, None) for name in SETTINGS_IN_REPORT}
        snapshot["vector_store"] = vector_backend_name(s)
        snapshot["reranker_active"] = self.services.reranker is not None
        if generate and self.services.llm is not None:
            snapshot["llm_model"] = self.services.llm.model
            snapshot["prompt_version"] = PROMPT_VERSION
        return snapshot
