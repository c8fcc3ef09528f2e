"""The answer cache as the query path uses it: the scope of a request, the lookup, the store.

A lookup embeds the question once for the semantic cache; a miss hands that embedding on to retrieval,
so a query is never embedded twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.config import Settings
from core.models import Collection
from generation.backends.base import LLMBackend
from generation.cache import AnswerCache, CacheScope
from generation.prompt import PROMPT_VERSION
from generation.query_types import QueryRequest, QueryResult, filters_to_json
from retrieval.retriever import HybridRetriever, IndexProfile


@dataclass
class CacheLookup:
    """One request's cache lookup: where its answer would live, the question's embedding, and the hit."""

    scope: CacheScope
    query_vector: np.ndarray | None
    cached: QueryResult | None


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def cache_scope(
    collection: Collection, request: QueryRequest, llm: LLMBackend | None, answer_mode: str | None
) -> CacheScope:
    """Everything an answer depends on besides the question: a change of any of them is another entry."""
    params = {
        "mode": request.mode,
        "top_k": request.top_k,
        "generate": request.generate,
        "filters": filters_to_json(request.filters),
        "model": llm.model if request.generate and llm is not None else None,
        "prompt": PROMPT_VERSION,
        "answer_mode": answer_mode if request.generate else None,
    }
    for name in ("max_tokens", "temperature"):  # only when set: requests that do not set them keep their keys
        if getattr(request, name) is not None:
            params[name] = getattr(request, name)
    return CacheScope(collection.name, collection.index_version, collection.content_version, params)


def cache_lookup(
    cache: AnswerCache | None,
    retriever: HybridRetriever,
    settings: Settings,
    collection: Collection,
    request: QueryRequest,
    scope: CacheScope,
) -> CacheLookup | None:
    """None when the cache is off for this request."""
    if cache is None or not cache.enabled or not request.use_cache:
        return None
    started = time.perf_counter()
    profile = IndexProfile.of_collection(settings, collection.options)
    vector = retriever.embedder_for(profile).embed_query(request.query) if cache.semantic else None
    hit = cache.lookup(scope, request.query, vector)
    cached = QueryResult.from_cached(hit.value, hit, _ms(started)) if hit else None
    return CacheLookup(scope, vector, cached)


def cache_store(
    cache: AnswerCache | None, lookup: CacheLookup | None, request: QueryRequest, result: QueryResult
) -> None:
    if lookup is None or cache is None:
        return
    value = result.to_dict()
    for volatile in ("query_id", "timings_ms", "events", "cache"):
        value.pop(volatile)
    cache.put(lookup.scope, request.query, lookup.query_vector, value)
