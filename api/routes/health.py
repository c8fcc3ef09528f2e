from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ServicesDep
from ingest import ocr
from retrieval.vector_store import vector_backend_name

router = APIRouter(tags=["health"])


@router.get("/health")
def health(services: ServicesDep) -> dict[str, Any]:
    """Liveness plus what this process runs with (no secrets)."""
    s = services.settings
    reranker = services.reranker
    return {
        "status": "ok",
        "vector_backend": vector_backend_name(s),
        "keyword_backend": s.keyword_backend,
        "embedding_model": s.embedding_model,
        "embedding_backend": s.embedding_backend,
        "llm_backend": s.llm_backend,
        "answer_mode": s.answer_mode,
        "reranker": {"active": reranker is not None, "model": s.reranker_model},
        "ocr": ocr.describe(s.ocr),
        "worker": "external" if s.broker_url else "embedded",
        "auth": s.api_key is not None,
    }
