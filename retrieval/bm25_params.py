"""BM25 parameters every keyword backend scores with, so the backends rank alike; one pair per granularity.

Chunks and whole documents differ in how their lengths vary. Chunks are cut to a token budget, so their
lengths cluster and length normalization matters little (a small ``b``); documents range from a paragraph to
many pages, and a long one matches more query terms by sheer size (the classic ``b`` near 0.75). Both pairs
were chosen on SciFact train with Lucene's formula (its idf never goes negative, so one-chunk collections still
match their words): the chunk pair by bench/tune_retrieval.py, the document pair by
bench/tune_document_field.py (the best keyword ranking among those that leave the hybrid's as it was).
"""

from dataclasses import dataclass

from retrieval.document_field import is_document_index


@dataclass(frozen=True)
class Bm25Params:
    k1: float
    b: float


CHUNKS = Bm25Params(k1=0.45, b=0.2)
"""Chunk-level indexes (every keyword index but the document field's)."""
DOCUMENTS = Bm25Params(k1=1.2, b=0.75)
"""The document field's indexes (``retrieval.document_field``): one row per whole document. tantivy's own fixed
pair, so the default keyword engine ranks the field without re-scoring it (``tantivy_index.search_documents``);
on SciFact train its hybrid is within 0.001 of the best pair's (bench/tune_document_field.py)."""


def for_index(index: str) -> Bm25Params:
    """The parameters keyword index ``index`` is scored with."""
    return DOCUMENTS if is_document_index(index) else CHUNKS
