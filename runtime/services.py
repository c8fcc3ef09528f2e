"""The composition root: every long-lived object a process needs, built once from settings.

The API keeps one on ``app.state``, the Celery worker process keeps one per process, and the CLI builds
one per command. Heavy parts (models, stores) load lazily on first use, so building this is cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from core.config import Settings
from core.db import Database
from core.schema import prepare_schema
from generation.backends import make_llm
from generation.backends.base import LLMBackend
from generation.cache import AnswerCache, make_cache
from generation.conversation import ConversationService
from generation.query_service import QueryService
from ingest.service import IngestService
from retrieval.cross_encoder import make_reranker
from retrieval.embedding import Embedder
from retrieval.keyword import KeywordIndex, make_keyword_index
from retrieval.rerank import Reranker
from retrieval.retriever import HybridRetriever
from retrieval.vector_store import VectorStore, make_vector_store

T = TypeVar("T")
_BUILD_LOCK = threading.RLock()


class cached_property(Generic[T]):
    """``functools.cached_property`` without its per-instance race: the API thread and the embedded worker
    thread may ask for the same store at once, and two Qdrant Edge handles on one folder would collide."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__

    def __get__(self, instance: Any, owner: type | None = None) -> T:
        if instance is None:
            return self  # type: ignore[return-value]
        with _BUILD_LOCK:
            if self.name not in instance.__dict__:
                instance.__dict__[self.name] = self.func(instance)
            return instance.__dict__[self.name]


@dataclass
class Services:
    settings: Settings

    @cached_property
    def db(self) -> Database:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(self.settings.sql_url)
        prepare_schema(database, migrate=self.settings.db_migrate_on_start)
        return database

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder.from_settings(self.settings)

    @cached_property
    def vectors(self) -> VectorStore:
        return make_vector_store(self.settings)

    @cached_property
    def keywords(self) -> KeywordIndex:
        return make_keyword_index(self.settings)

    @cached_property
    def reranker(self) -> Reranker | None:
        return make_reranker(self.settings)

    @cached_property
    def retriever(self) -> HybridRetriever:
        return HybridRetriever.tuned(self.settings, self.embedder, self.vectors, self.keywords, self.reranker)

    @cached_property
    def llm(self) -> LLMBackend | None:
        return make_llm(self.settings)

    @cached_property
    def cache(self) -> AnswerCache:
        return make_cache(self.settings)

    @cached_property
    def queries(self) -> QueryService:
        return QueryService(self.db, self.retriever, self.llm, self.settings, self.cache)

    @cached_property
    def ingest(self) -> IngestService:
        return IngestService(self.db, self.retriever, self.settings)

    @cached_property
    def conversations(self) -> ConversationService:
        return ConversationService(self.db, self.queries)

    def close(self) -> None:
        """Persist and release the stores (they lock their folders to one process)."""
        for name in ("keywords", "vectors"):
            if name in self.__dict__:
                getattr(self, name).close()
                del self.__dict__[name]
        for name in ("retriever", "queries", "ingest", "conversations"):
            self.__dict__.pop(name, None)
        if "db" in self.__dict__:
            self.db.dispose()
