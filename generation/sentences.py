"""Splitting text into sentences that keep their character offsets in the text they came from.

Offsets always index the original string, so a client can highlight ``text[start:end]`` in the stored
chunk. The splitter is rule-based and pure:

- a boundary is ``.``, ``!``, ``?`` or ``…`` (plus closing quotes/brackets) followed by whitespace, a blank
  line, or the start of a list item (``- ``, ``* ``, ``• ``, ``1. ``, ``a) `` at the start of a line);
- a period after a known abbreviation (``Dr.``, ``e.g.``, ``U.S.``), an initial (``J. Smith``) or a lone
  number that starts a list item is not a boundary, and decimals never are (no whitespace follows);
- a single line break inside a paragraph is not a boundary (PDF text wraps lines mid-sentence); a word
  hyphenated across a line break (``exam-\\nple``) stays one word in ``Sentence.clean``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ABBREVIATIONS = frozenset(
    (
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "al",
        "fig",
        "figs",
        "vol",
        "vols",
        "pp",
        "ed",
        "eds",
        "inc",
        "ltd",
        "co",
        "corp",
        "approx",
        "ca",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "gen",
        "col",
        "lt",
        "sgt",
        "rev",
        "mt",
        "ft",
        "dept",
        "univ",
        "u.s",
        "u.k",
        "u.n",
        "e.u",
        "p.m",
        "a.m",
        "ph.d",
        "b.c",
        "a.d",
        "op",
        "cit",
        "ibid",
        "ie",
        "eg",
    )
)

_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_BLANK_LINE = re.compile(r"\n[ \t]*\n\s*")
_LIST_ITEM = re.compile(r"\n[ \t]*(?:[-*•▪◦]|\d{1,3}[.)]|[a-zA-Z][.)])[ \t]+")
_WORD_BEFORE = re.compile(r"(\S+)$")
_HYPHEN_BREAK = re.compile(r"(?<=\w)-[ \t]*\n[ \t]*(?=[a-z])")
_SPACES = re.compile(r"\s+")
MIN_SENTENCE_CHARS = 3


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str
    """Exactly ``source[start:end]``."""

    @property
    def clean(self) -> str:
        """The sentence as one line: hyphenated line breaks joined, whitespace runs collapsed."""
        return _SPACES.sub(" ", _HYPHEN_BREAK.sub("", self.text)).strip()


def _is_abbreviation(text: str, period: int) -> bool:
    """Whether the period at ``text[period]`` ends an abbreviation or an initial, not a sentence."""
    found = _WORD_BEFORE.search(text, 0, period)
    if found is None:
        return False
    word = found.group(1).lstrip("([\"'“‘").lower()
    if not word:
        return False
    if word in ABBREVIATIONS:
        return True
    # An initial ("J. Smith") or the inner letters of "U.S.A." ("s.a").
    return (len(word) == 1 and word.isalpha()) or bool(re.fullmatch(r"(?:[a-z]\.)+[a-z]", word))


def _is_list_number(text: str, period: int) -> bool:
    """``1.`` or ``a)`` at the start of a line is a list marker, not the end of a sentence."""
    line_start = text.rfind("\n", 0, period) + 1
    return bool(re.fullmatch(r"[ \t]*(?:\d{1,3}|[a-zA-Z])", text[line_start:period]))


def _boundaries(text: str) -> list[int]:
    cuts: set[int] = set()
    for match in _END.finditer(text):
        single_period = match.group(0).startswith(".") and not match.group(0).startswith("..")
        if single_period and (_is_abbreviation(text, match.start()) or _is_list_number(text, match.start())):
            continue
        cuts.add(match.end())
    for pattern in (_BLANK_LINE, _LIST_ITEM):
        cuts.update(match.start() for match in pattern.finditer(text))
    return sorted(cuts)


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of ``text`` in order, stripped of surrounding whitespace, with offsets into ``text``.

    Fragments shorter than ``MIN_SENTENCE_CHARS`` (a stray list number, a lone bracket) join the next piece.
    """
    pieces: list[tuple[int, int]] = []
    start = 0
    for cut in [*_boundaries(text), len(text)]:
        if cut > start:
            pieces.append((start, cut))
            start = cut
    sentences: list[Sentence] = []
    carry: int | None = None
    for begin, end in pieces:
        begin = carry if carry is not None else begin
        stripped_begin = begin + (len(text[begin:end]) - len(text[begin:end].lstrip()))
        stripped_end = end - (len(text[begin:end]) - len(text[begin:end].rstrip()))
        if stripped_end - stripped_begin < MIN_SENTENCE_CHARS:
            carry = begin if stripped_end > stripped_begin else None
            continue
        carry = None
        sentences.append(Sentence(stripped_begin, stripped_end, text[stripped_begin:stripped_end]))
    if carry is not None and sentences:
        last = sentences[-1]
        end = len(text.rstrip())
        sentences[-1] = Sentence(last.start, end, text[last.start : end])
    return sentences
