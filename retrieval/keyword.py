"""The keyword-index Protocol and the registry that picks an implementation from settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from core.config import Settings
from core.types import ChunkRecord, Hit, SearchFilter
from retrieval.document_field import DocumentHits
from retrieval.text_analysis import DEFAULT_TOKENIZER


class KeywordIndex(Protocol):
    """BM25 index keyed by chunk id, sharing ids and payloads with the vector store.

    ``tokenizer`` names an analyzer of ``retrieval.text_analysis``; the caller passes an index's own one to
    both ``add`` and ``search`` (a collection records it, see ``retrieval.retriever.IndexProfile``).
    """

    name: str

    def add(self, index: str, records: Sequence[ChunkRecord], tokenizer: str = DEFAULT_TOKENIZER) -> None:
        """Insert or overwrite by chunk id, without re-tokenizing what is already indexed."""

    def delete_document(self, index: str, document_id: str) -> None: ...

    def search(
        self, index: str, query: str, limit: int, flt: SearchFilter | None = None, tokenizer: str = DEFAULT_TOKENIZER
    ) -> list[Hit]:
        """Best-first hits with a positive score; ``flt`` restricts the candidates before ranking."""

    def search_documents(
        self, index: str, query: str, limit: int, flt: SearchFilter | None = None, tokenizer: str = DEFAULT_TOKENIZER
    ) -> DocumentHits:
        """The best rows of ``index``'s document field (``retrieval.document_field``), as ``search`` would rank
        ``document_index(index)``; rows are read only when asked for (``DocumentHits.rows``)."""

    def count(self, index: str) -> int: ...

    def drop(self, index: str) -> None: ...

    def close(self) -> None:
        """Persist anything pending."""


def _bm25s(settings: Settings) -> KeywordIndex:
    from retrieval.bm25s_index import Bm25sIndex

    return Bm25sIndex(settings.keyword_dir)


def _rank_bm25(settings: Settings) -> KeywordIndex:
    from retrieval.rank_bm25_index import RankBm25Index

    return RankBm25Index(settings.keyword_dir)


def _tantivy(settings: Settings) -> KeywordIndex:
    from retrieval.tantivy_index import TantivyIndex

    return TantivyIndex(settings.keyword_dir)


def _qdrant_sparse(settings: Settings) -> KeywordIndex:
    from qdrant_client import QdrantClient

    from retrieval.qdrant_sparse import QdrantSparseIndex, estimated_avg_len

    if not settings.qdrant_url:
        raise ValueError("RAG_KEYWORD_BACKEND=qdrant_sparse needs RAG_QDRANT_URL (a Qdrant server)")
    client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
    return QdrantSparseIndex(client, avg_len=estimated_avg_len(settings.chunk_size_tokens))


KEYWORD_INDEXES: dict[str, Callable[[Settings], KeywordIndex]] = {
    "bm25s": _bm25s,
    "rank_bm25": _rank_bm25,
    "tantivy": _tantivy,
    "qdrant_sparse": _qdrant_sparse,
}


def make_keyword_index(settings: Settings) -> KeywordIndex:
    return KEYWORD_INDEXES[settings.keyword_backend](settings)
