"""Answer cache: exact match and semantic (cosine) match, scoped by what makes an answer valid.

Every key carries the collection, its index version and its content version (bumped by each upload,
delete and re-index switch) plus the parameters that change an answer (mode, top_k, filters, model,
prompt version). A change to the collection therefore makes its old entries unreachable: a stale answer
cannot be served, and the orphans age out of the bounded store.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from cachetools import TTLCache

from core.config import Settings


class CacheStore(Protocol):
    """Where cached answers live: in-process (bounded LRU with TTL) or Redis (shared by API replicas)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, value: dict[str, Any]) -> None: ...

    def add_vector(self, scope: str, key: str, vector: np.ndarray) -> None: ...

    def nearest(self, scope: str, vector: np.ndarray) -> tuple[str, float] | None:
        """The cached key in ``scope`` whose query vector is closest (cosine), with that similarity."""


class MemoryCacheStore:
    def __init__(self, max_entries: int, ttl_s: float, max_vectors_per_scope: int = 2000) -> None:
        self._values: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=max_entries, ttl=ttl_s)
        self._scopes: TTLCache[str, TTLCache[str, np.ndarray]] = TTLCache(maxsize=max_entries, ttl=ttl_s)
        self._per_scope = max_vectors_per_scope
        self._ttl = ttl_s
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._values.get(key)

    def set(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._values[key] = value

    def add_vector(self, scope: str, key: str, vector: np.ndarray) -> None:
        with self._lock:
            vectors = self._scopes.get(scope)
            if vectors is None:
                vectors = TTLCache(maxsize=self._per_scope, ttl=self._ttl)
                self._scopes[scope] = vectors
            vectors[key] = vector.astype(np.float32)

    def nearest(self, scope: str, vector: np.ndarray) -> tuple[str, float] | None:
        with self._lock:
            vectors = self._scopes.get(scope)
            items = list(vectors.items()) if vectors else []
        return best_match(items, vector)


class RedisCacheStore:
    def __init__(self, url: str, ttl_s: float, max_vectors_per_scope: int = 2000) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._ttl = int(ttl_s)
        self._per_scope = max_vectors_per_scope

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._redis.get(f"rag:answer:{key}")
        return json.loads(raw) if raw else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._redis.set(f"rag:answer:{key}", json.dumps(value, default=str), ex=self._ttl)

    def add_vector(self, scope: str, key: str, vector: np.ndarray) -> None:
        name = f"rag:vectors:{scope}"
        if self._redis.hlen(name) >= self._per_scope:
            return
        pipe = self._redis.pipeline()
        pipe.hset(name, key, vector.astype(np.float32).tobytes())
        pipe.expire(name, self._ttl)
        pipe.execute()

    def nearest(self, scope: str, vector: np.ndarray) -> tuple[str, float] | None:
        stored = self._redis.hgetall(f"rag:vectors:{scope}")
        items = [(k.decode(), np.frombuffer(v, dtype=np.float32)) for k, v in stored.items()]
        return best_match(items, vector)


def best_match(items: list[tuple[str, np.ndarray]], vector: np.ndarray) -> tuple[str, float] | None:
    if not items:
        return None
    matrix = np.stack([v for _, v in items])
    scores = matrix @ (vector / (np.linalg.norm(vector) or 1.0))
    best = int(np.argmax(scores))
    return items[best][0], float(scores[best])


def normalize_query(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheScope:
    """Everything but the query text that must match for a cached answer to be valid."""

    collection: str
    index_version: int
    content_version: int
    params: dict[str, Any]

    @property
    def key(self) -> str:
        return digest([self.collection, self.index_version, self.content_version, self.params])


@dataclass(frozen=True)
class CacheHit:
    value: dict[str, Any]
    kind: str  # "exact" or "semantic"
    similarity: float


class AnswerCache:
    def __init__(self, store: CacheStore, exact: bool, semantic: bool, threshold: float) -> None:
        self.store = store
        self.exact = exact
        self.semantic = semantic
        self.threshold = threshold

    @property
    def enabled(self) -> bool:
        return self.exact or self.semantic

    def exact_key(self, scope: CacheScope, query: str) -> str:
        return digest([scope.key, normalize_query(query)])

    def lookup(self, scope: CacheScope, query: str, vector: np.ndarray | None) -> CacheHit | None:
        if self.exact:
            value = self.store.get(self.exact_key(scope, query))
            if value is not None:
                return CacheHit(value, "exact", 1.0)
        if self.semantic and vector is not None:
            match = self.store.nearest(scope.key, vector)
            if match is not None and match[1] >= self.threshold:
                value = self.store.get(match[0])
                if value is not None:
                    return CacheHit(value, "semantic", round(match[1], 4))
        return None

    def put(self, scope: CacheScope, query: str, vector: np.ndarray | None, value: dict[str, Any]) -> None:
        key = self.exact_key(scope, query)
        self.store.set(key, value)
        if self.semantic and vector is not None:
            self.store.add_vector(scope.key, key, vector)


def make_cache(settings: Settings) -> AnswerCache:
    store: CacheStore
    if settings.cache_url:
        store = RedisCacheStore(settings.cache_url, settings.cache_ttl_s)
    else:
        store = MemoryCacheStore(settings.cache_max_entries, settings.cache_ttl_s)
    return AnswerCache(store, settings.cache_exact, settings.cache_semantic, settings.cache_semantic_threshold)
