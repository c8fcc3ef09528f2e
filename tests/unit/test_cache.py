"""The answer cache's keys, hits and bounds, on both stores (Redis is the real local server)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import redis

from generation.cache import AnswerCache, CacheScope, MemoryCacheStore, RedisCacheStore, normalize_query
from tests.services import missing_service

REDIS_URL = "redis://127.0.0.1:6379/12"


def unit(v: list[float]) -> np.ndarray:
    a = np.array(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def redis_store(ttl: float) -> RedisCacheStore:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis not reachable on 127.0.0.1:6379 ({exc})")
    return RedisCacheStore(REDIS_URL, ttl)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return MemoryCacheStore(100, 60) if request.param == "memory" else redis_store(60)


def scope(**changes) -> CacheScope:  # type: ignore[no-untyped-def]
    base = {"collection": f"c{uuid.uuid4().hex[:6]}", "index_version": 1, "content_version": 3, "params": {"k": 5}}
    return CacheScope(**{**base, **changes})


def test_normalization_ignores_case_punctuation_and_spacing() -> None:
    assert normalize_query("  What is   BM25? ") == normalize_query("what is bm25")


def test_exact_hit_and_every_key_part_matters(store) -> None:  # type: ignore[no-untyped-def]
    cache = AnswerCache(store, exact=True, semantic=False, threshold=0.9)
    s = scope()
    cache.put(s, "What is BM25?", None, {"answer": "a ranking function"})
    hit = cache.lookup(s, "what is bm25", None)
    assert hit is not None and hit.kind == "exact" and hit.value["answer"] == "a ranking function"
    for changed in (
        CacheScope(s.collection, 2, s.content_version, s.params),
        CacheScope(s.collection, s.index_version, 4, s.params),
        CacheScope(s.collection, s.index_version, s.content_version, {"k": 6}),
        CacheScope("other", s.index_version, s.content_version, s.params),
    ):
        assert cache.lookup(changed, "What is BM25?", None) is None


def test_semantic_hit_respects_threshold_and_scope(store) -> None:  # type: ignore[no-untyped-def]
    cache = AnswerCache(store, exact=False, semantic=True, threshold=0.95)
    s = scope()
    cache.put(s, "how do owls hunt", unit([1, 0, 0]), {"answer": "by ear"})
    close = cache.lookup(s, "how does an owl hunt", unit([1, 0.1, 0]))
    assert close is not None and close.kind == "semantic" and close.similarity > 0.95
    assert cache.lookup(s, "what do owls eat", unit([1, 0.5, 0])) is None
    assert cache.lookup(scope(), "how does an owl hunt", unit([1, 0.1, 0])) is None


def test_disabled_cache_never_hits(store) -> None:  # type: ignore[no-untyped-def]
    cache = AnswerCache(store, exact=False, semantic=False, threshold=0.9)
    s = scope()
    cache.put(s, "q", unit([1, 0]), {"answer": "a"})
    assert not cache.enabled and cache.lookup(s, "q", unit([1, 0])) is None


def test_memory_store_is_bounded_and_expires() -> None:
    store = MemoryCacheStore(max_entries=2, ttl_s=0.2)
    for i in range(3):
        store.set(f"k{i}", {"i": i})
    assert store.get("k0") is None and store.get("k2") == {"i": 2}
    time.sleep(0.3)
    assert store.get("k2") is None


def test_redis_store_entries_expire() -> None:
    store = redis_store(1)
    store.set("expiring", {"a": 1})
    assert store.get("expiring") == {"a": 1}
    time.sleep(2.1)
    assert store.get("expiring") is None
