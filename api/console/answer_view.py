"""Pure shaping of a query result for the answer template: ``[n]`` markers as links, cited sentences
marked inside their chunk by the offsets the API returns, and each hit's rank in every retrieval stage."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.types import STAGES

MARKER = re.compile(r"\[(\d+)\]")
WHY_ROWS = 20


@dataclass(frozen=True)
class Piece:
    text: str
    citation: int | None = None  # a ``[n]`` marker that links to source card n


@dataclass(frozen=True)
class Segment:
    text: str
    cited: bool


@dataclass(frozen=True)
class WhyRow:
    chunk_id: str
    filename: str | None
    page: int | None
    number: int | None
    ranks: dict[str, int | None]


def answer_pieces(answer: str, numbers: set[int]) -> list[Piece]:
    """Text and markers in order; a marker with no source card stays plain text."""
    pieces: list[Piece] = []
    at = 0
    for match in MARKER.finditer(answer):
        number = int(match.group(1))
        if number not in numbers:
            continue
        if match.start() > at:
            pieces.append(Piece(answer[at : match.start()]))
        pieces.append(Piece(match.group(0), number))
        at = match.end()
    if at < len(answer):
        pieces.append(Piece(answer[at:]))
    return pieces


def cited_spans(citation: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Every span the answer rests on, else the first quote's offsets; clipped to the text, merged."""
    length = len(citation.get("text") or "")
    raw = [(s.get("start"), s.get("end")) for s in citation.get("spans") or []]
    if not raw and citation.get("start") is not None:
        raw = [(citation.get("start"), citation.get("end"))]
    spans = sorted((max(0, int(a)), min(length, int(b))) for a, b in raw if a is not None and b is not None)
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlighted(citation: Mapping[str, Any]) -> list[Segment]:
    text = citation.get("text") or ""
    segments: list[Segment] = []
    at = 0
    for start, end in cited_spans(citation):
        if start > at:
            segments.append(Segment(text[at:start], cited=False))
        segments.append(Segment(text[start:end], cited=True))
        at = end
    if at < len(text):
        segments.append(Segment(text[at:], cited=False))
    return segments


def final_ids(retrieval: Mapping[str, Sequence[str]]) -> list[str]:
    """The hits the answer was built from: the last stage that ran."""
    for stage in reversed(STAGES):
        if retrieval.get(stage):
            return list(retrieval[stage])
    return []


def why_rows(
    retrieval: Mapping[str, Sequence[str]],
    citations: Sequence[Mapping[str, Any]],
    candidates: Sequence[Mapping[str, Any]] = (),
) -> list[WhyRow]:
    """Each final hit's 1-based rank in the vector, keyword, fused and reranked lists (None: not in it),
    named by its file (from the retrieved ``candidates``) and its ``[n]`` when the answer cites it."""
    positions = {stage: {cid: i + 1 for i, cid in enumerate(retrieval.get(stage) or [])} for stage in STAGES}
    names = {c.get("chunk_id"): (c.get("filename"), c.get("page")) for c in [*candidates, *citations]}
    numbers = {c.get("chunk_id"): c.get("number") for c in citations if c.get("number") is not None}
    rows = []
    for chunk_id in final_ids(retrieval)[:WHY_ROWS]:
        rows.append(
            WhyRow(
                chunk_id=chunk_id,
                filename=names.get(chunk_id, (None, None))[0],
                page=names.get(chunk_id, (None, None))[1],
                number=numbers.get(chunk_id),
                ranks={stage: positions[stage].get(chunk_id) for stage in STAGES},
            )
        )
    return rows


def stages_run(retrieval: Mapping[str, Sequence[str]]) -> list[str]:
    return [stage for stage in STAGES if retrieval.get(stage)]
