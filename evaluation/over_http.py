"""The eval target behind a server: the corpus goes through the batch upload endpoint and every question
through ``POST /v1/collections/{c}/query``, with the Python client.

Chunk ids are derived, not fetched: a document's chunks are ``chunk_id(document, 0..chunks-1)``
(``core.ids``), which is how the ingest pipeline names them. Answers are scored without the similarity
metric (it needs an embedding model in this process) and without the LLM judge (the server's LLM is not
exposed as such); every other figure is the in-process run's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from tqdm import tqdm

from client import ConflictError, RagClient
from client.uploads import bar_progress
from core.ids import chunk_id
from core.schemas import DocumentOut
from core.types import Hit
from evaluation.answer_metrics import Encode
from evaluation.corpus import Corpus, wait_for_vector_builds
from evaluation.datasets import EvalDataset
from generation.query_types import QueryRequest, QueryResult

RATE_LIMIT_RETRIES = 1000
"""An eval asks hundreds of questions: on a 429 it waits as long as the server says, again and again."""
HEALTH_SETTINGS = ("vector_backend", "keyword_backend", "embedding_model", "embedding_backend", "llm_backend")


class HttpTarget:
    def __init__(self, rag: RagClient) -> None:
        self.rag = rag
        self.rag.rate_limit_retries = RATE_LIMIT_RETRIES
        self._health: dict[str, Any] | None = None

    def health(self) -> dict[str, Any]:
        if self._health is None:
            self._health = self.rag.health()
        return self._health

    def ingest(self, dataset: EvalDataset, collection: str, batch_size: int, progress: bool) -> Corpus:
        started = time.perf_counter()
        with suppress(ConflictError):  # reused: uploads of the same bytes return the documents it holds
            self.rag.create_collection(collection)
        files = [(d.filename, d.upload_text().encode("utf-8")) for d in dataset.documents]
        with tqdm(total=len(files), desc="uploading", unit="doc", disable=not progress) as bar:
            report = self.rag.upload_files(collection, files, progress=bar_progress(bar))
        doc_to_dataset: dict[str, list[str]] = {}
        pending: list[str] = []
        for source, item in zip(dataset.documents, report.items, strict=True):
            if isinstance(item, DocumentOut):
                doc_to_dataset.setdefault(item.id, []).append(source.id)
                if item.status not in ("indexed", "failed"):
                    pending.append(item.id)
        with tqdm(total=len(doc_to_dataset), desc="indexing", unit="doc", disable=not progress) as bar:
            finished = self.rag.wait_for_documents(list(doc_to_dataset), progress=bar_progress(bar))
        build = wait_for_vector_builds(lambda: self._vectors_awaiting_build(collection), progress)
        chunk_to_doc = {chunk_id(d.id, i): d.id for d in finished for i in range(d.chunks)}
        failures = [f"{r.filename}: {r.error.message}" for r in report.rejected]
        failures += [f"{d.filename}: {d.error}" for d in finished if d.status == "failed"]
        summary = {
            "documents": len(dataset.documents),
            "uploads": len(doc_to_dataset),
            "created": sum(1 for item in report.items if isinstance(item, DocumentOut) and not item.duplicate),
            "indexed_now": len(set(pending)),
            "failed": len(failures),
            "failures": failures[:10],
            "chunks": len(chunk_to_doc),
            "seconds": round(time.perf_counter() - started, 1),
            **build,
        }
        return Corpus(doc_to_dataset=doc_to_dataset, chunk_to_doc=chunk_to_doc, summary=summary)

    def _vectors_awaiting_build(self, collection: str) -> int:
        return next(c.vectors_awaiting_build for c in self.rag.list_collections() if c.name == collection)

    def query(self, collection: str, request: QueryRequest) -> QueryResult:
        out = self.rag.query(
            collection,
            request.query,
            top_k=request.top_k,
            mode=request.mode,
            generate=request.generate,
            cache=request.use_cache,
            answer_mode=request.answer_mode,  # type: ignore[typeddict-item]
        )
        body = out.model_dump(mode="json")
        # Without generation the citations are the final ranking; with it, the cited chunks.
        hits = [Hit(c.chunk_id, c.score, {"document_id": c.document_id, "text": c.text}) for c in out.citations]
        return QueryResult(**body, hits=hits)

    def default_answer_mode(self) -> str:
        return str(self.health().get("answer_mode", "server default"))

    def has_llm(self) -> bool:
        return self.health().get("llm_backend") != "none"

    def encoder(self) -> Encode | None:
        return None

    def judge(self, answer: str, sources: Sequence[str]) -> bool | None:
        return None

    def settings_snapshot(self, generate: bool) -> dict[str, Any]:
        health = self.health()
        snapshot: dict[str, Any] = {"server": self.rag.base_url}
        snapshot.update({name: health.get(name) for name in HEALTH_SETTINGS})
        snapshot["reranker_active"] = bool((health.get("reranker") or {}).get("active"))
        snapshot["reranker_model"] = (health.get("reranker") or {}).get("model")
        snapshot["answer_mode"] = health.get("answer_mode")
        return snapshot
