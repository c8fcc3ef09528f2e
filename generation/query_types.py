"""What a query asks and what it returns: the shapes the API, the CLI, conversations and the eval share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.ids import new_id
from core.types import STAGES, Hit, RetrievalMode, SearchFilter
from generation.cache import CacheHit

__all__ = ["STAGES", "Mode", "QueryRequest", "QueryResult", "filters_to_json", "hit_citation"]

Mode = RetrievalMode


@dataclass(frozen=True)
class QueryRequest:
    query: str
    top_k: int = 5
    mode: Mode = "hybrid"
    generate: bool = True
    filters: SearchFilter = field(default_factory=SearchFilter)
    use_cache: bool = True
    owner: str | None = None  # the API key id ("root" for the bootstrap key), for per-user data deletion
    answer_mode: str | None = None
    """extractive, generative or auto; None = ``RAG_ANSWER_MODE``."""
    max_tokens: int | None = None
    """The LLM's answer budget, at most ``RAG_LLM_MAX_TOKENS`` (which also sizes prompt packing); None = that."""
    temperature: float | None = None
    """None = ``RAG_LLM_TEMPERATURE``."""


@dataclass
class QueryResult:
    query_id: str
    collection: str
    index_version: int
    answer: str | None
    abstained: bool | None
    citations: list[dict[str, Any]]
    retrieval: dict[str, list[str]]
    usage: dict[str, int]
    timings_ms: dict[str, float]
    model: str | None = None
    backend: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=lambda: {"hit": False})
    answer_mode: str | None = None
    fallback_reason: str | None = None
    abstain_reason: str | None = None
    groundedness: float | None = None
    answerability: float | None = None
    sentences: list[dict[str, Any]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("hits")
        return body

    @classmethod
    def from_cached(cls, value: dict[str, Any], hit: CacheHit, elapsed_ms: float) -> QueryResult:
        known = {f.name for f in fields(cls)} - {"query_id", "hits", "cache", "timings_ms", "events"}
        return cls(
            query_id=new_id(),
            timings_ms={"cache": elapsed_ms},
            events=[{"type": "cache_hit", "kind": hit.kind, "similarity": hit.similarity}],
            cache={"hit": True, "kind": hit.kind, "similarity": hit.similarity},
            **{k: v for k, v in value.items() if k in known},
        )


def hit_citation(hit: Hit) -> dict[str, Any]:
    p = hit.payload
    return {
        "number": None,
        "chunk_id": hit.id,
        "document_id": p.get("document_id"),
        "filename": p.get("filename"),
        "page": p.get("page"),
        "score": round(float(hit.score), 6),
        "text": p.get("text", ""),
        "ocr": bool(p.get("ocr", False)),
    }


def filters_to_json(flt: SearchFilter) -> dict[str, Any]:
    body = {k: v for k, v in asdict(flt).items() if v not in ((), None)}
    for key in ("uploaded_after", "uploaded_before"):
        if key in body:
            body[key] = body[key].isoformat()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in body.items()}
