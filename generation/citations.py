"""Reading an answer back: which numbered sources it cites, and whether it declined to answer."""

from __future__ import annotations

import re
from collections.abc import Collection

# [1]  [1, 3]  [1; 2]  [1-3]  [Source 2]  [sources 1 and 2]
_MARKER = re.compile(r"\[\s*(?:sources?\s*)?(\d+(?:\s*(?:,|;|-|–|and)\s*(?:sources?\s*)?\d+)*)\s*\]", re.I)
_NUMBER_OR_RANGE = re.compile(r"(\d+)(?:\s*[-–]\s*(\d+))?")
_MAX_RANGE = 50

ABSTENTION_PHRASES: tuple[str, ...] = (
    "i don't know",
    "i do not know",
    "i dont know",
    "i'm not sure",
    "i am not sure",
    "cannot find",
    "can't find",
    "could not find",
    "couldn't find",
    "unable to find",
    "unable to answer",
    "cannot answer",
    "can't answer",
    "not enough information",
    "no information",
    "not mentioned in the sources",
    "not in the sources",
    "sources do not contain",
    "sources don't contain",
    "sources do not provide",
    "sources don't provide",
    "sources do not mention",
    "sources don't mention",
    "does not contain the answer",
    "doesn't contain the answer",
)


def cited_numbers(answer: str, available: Collection[int]) -> list[int]:
    """Source numbers the answer cites, in order of first mention, restricted to ``available``.

    Numbers that were never given to the model (hallucinated citations) are dropped here, so a
    response never points at a source that does not exist.
    """
    seen: list[int] = []
    for marker in _MARKER.finditer(answer):
        for match in _NUMBER_OR_RANGE.finditer(marker.group(1)):
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) else first
            numbers = range(first, last + 1) if 0 <= last - first <= _MAX_RANGE else (first, last)
            seen.extend(n for n in numbers if n in available and n not in seen)
    return seen


def is_abstention(answer: str) -> bool:
    """True when the answer says the sources do not hold what was asked (or is empty)."""
    normalized = " ".join(answer.replace("\u2019", "'").lower().split())
    return not normalized or any(phrase in normalized for phrase in ABSTENTION_PHRASES)


def citation_markers(answer: str, available: Collection[int]) -> list[tuple[int, int, list[int]]]:
    """Every citation marker of the answer as (start, end, the available numbers it names), in text order:
    where a client puts a link to each source."""
    found: list[tuple[int, int, list[int]]] = []
    for marker in _MARKER.finditer(answer):
        numbers = cited_numbers(marker.group(0), available)
        if numbers:
            found.append((marker.start(), marker.end(), numbers))
    return found
