"""The passages evidence is drawn from: the top hits and the chunks around them, read from SQL.

Chunks overlap and are cut at token budgets, so a hit's first sentence is often the tail of one its
neighbour holds whole, and the sentence that answers may sit just outside the hit. Each of the first
``hits`` hits brings its neighbours within ``radius`` ordinals (same document, same index version); a
neighbour takes the rank of the best hit next to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select

from core.db import Database
from core.models import Chunk
from core.types import Hit
from generation.evidence import Passage


def passage_of_hit(rank: int, hit: Hit) -> Passage:
    payload = hit.payload
    return Passage(
        rank=rank,
        chunk_id=hit.id,
        document_id=payload.get("document_id"),
        filename=payload.get("filename"),
        page=payload.get("page"),
        ordinal=int(payload.get("ordinal") or 0),
        text=str(payload.get("text") or ""),
        score=float(hit.score),
        context=payload.get("heading") or None,
        ocr=bool(payload.get("ocr", False)),
    )


def evidence_passages(
    db: Database | None, index_version: int, hits: Sequence[Hit], count: int, radius: int
) -> list[Passage]:
    """The first ``count`` hits as passages, plus their neighbours from SQL (one SELECT) when ``db`` is given."""
    top = [passage_of_hit(rank, hit) for rank, hit in enumerate(hits[:count])]
    if db is None or radius < 1 or not top:
        return top
    have = {(p.document_id, p.ordinal) for p in top}
    wanted: dict[tuple[str, int], Passage] = {}
    for passage in top:
        if passage.document_id is None:
            continue
        for ordinal in range(passage.ordinal - radius, passage.ordinal + radius + 1):
            key = (passage.document_id, ordinal)
            if ordinal >= 0 and key not in have and key not in wanted:
                wanted[key] = passage
    if not wanted:
        return top
    clauses = [and_(Chunk.document_id == doc, Chunk.ordinal == ordinal) for doc, ordinal in wanted]
    with db.session() as session:
        rows = session.execute(
            select(Chunk.id, Chunk.document_id, Chunk.ordinal, Chunk.page, Chunk.text).where(
                Chunk.index_version == index_version, or_(*clauses)
            )
        ).all()
    neighbours = [
        Passage(
            rank=wanted[(doc, ordinal)].rank,
            chunk_id=chunk_id,
            document_id=doc,
            filename=wanted[(doc, ordinal)].filename,
            page=page,
            ordinal=ordinal,
            text=text,
            score=wanted[(doc, ordinal)].score,
            context=wanted[(doc, ordinal)].context,
            # SQL rows do not say whether a chunk was read by OCR; a neighbour on its hit's page was.
            ocr=wanted[(doc, ordinal)].ocr and page == wanted[(doc, ordinal)].page,
        )
        for chunk_id, doc, ordinal, page, text in rows
    ]
    return top + neighbours
