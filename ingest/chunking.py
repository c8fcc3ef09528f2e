"""Token-aware chunking of parsed sections. Pure and deterministic: same input, same chunks.

How a chunk is made, and why:

* Chunks never cross sections: a chunk cites one page and one heading. Consecutive sections with the
  *same* page and heading (and the same ``ocr`` and ``keep_paragraphs`` marks) are joined first (a parser
  may emit several; they are one run of text), so they do not each leave a tiny chunk behind. Sections that
  differ in any of these are never merged.
* In a ``keep_paragraphs`` section (table rows as records) each paragraph that fits in ``size`` is one
  atom, so a chunk holds whole rows; such sections get no overlap, since a row's tail repeated at the top
  of the next chunk would be a split row.
* Section text is cut into atoms: sentences. A sentence longer than ``size`` falls back to its lines,
  then its words; a single "word" longer than ``size`` (a URL, base64) is cut into character runs.
  Each atom is counted once, so a whole book costs one tokenizer call per sentence, not one per growing
  chunk.
* Atoms are packed greedily up to ``size`` tokens. If the chunk holds a paragraph break and cutting there
  keeps it at least half full, it ends at that break instead, so paragraphs stay whole where cheap.
* The next chunk repeats the previous chunk's last atoms that fit in ``overlap`` tokens, topped up with
  the trailing words of the atom before them; overlap never repeats a whole chunk.
* Counting goes through a ``SpanCounter`` per section. By default each span is tokenized on its own; a
  caller may pass ``count_spans`` that gives the same counts cheaper (``Embedder.count_spans`` tokenizes a
  section once and counts word-aligned spans from the offsets: a twelfth of the tokenizer calls). A counter
  that is also a ``SpanTokens`` gives each chunk its token ids, which the embedding then reuses.
* A chunk's text is the exact slice of the section from its first atom to its last, and its token count
  is measured once on that slice; should a tokenizer count the whole as more than its parts, atoms are
  dropped from the end until it fits, so every chunk is at most ``size`` tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from ingest.parsers.base import Section

TokenCounter = Callable[[str], int]
SpanCounter = Callable[[int, int], int]
"""Tokens in ``text[start:end]`` of the one text it was made for."""
SpanCounting = Callable[[str], SpanCounter]


@runtime_checkable
class SpanTokens(Protocol):
    """A ``SpanCounter`` that can also give a span's token ids; chunks then carry them (``token_ids``), so the
    embedding model need not tokenize them again."""

    def __call__(self, start: int, end: int) -> int: ...

    def ids(self, start: int, end: int) -> tuple[int, ...] | None: ...


def slice_counter(count_tokens: TokenCounter) -> SpanCounting:
    """Every span tokenized on its own: exact for any tokenizer, one call per span."""
    return lambda text: lambda start, end: count_tokens(text[start:end])


@dataclass(frozen=True)
class ChunkDraft:
    ordinal: int
    text: str
    page: int | None
    heading: str | None
    token_count: int
    # The text's token ids (no special tokens) where the counter could read them off; not part of equality.
    token_ids: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    ocr: bool = False


@dataclass(frozen=True)
class _Atom:
    """A span ``text[start:end]`` that is never split further, with its token count."""

    start: int
    end: int
    tokens: int
    opens_paragraph: bool = False


_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# After terminal punctuation, optionally closed by a quote or bracket; abbreviations ("e.g. x") also split,
# which costs nothing here: a boundary is only a place a chunk *may* end. CJK full stops need no space.
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’»)\]]))\s+|(?<=[。！？])\s*")
_LINE_BREAK = re.compile(r"\s*\n\s*")
_WORD_BREAK = re.compile(r"\s+")
_FALLBACKS = (_SENTENCE_BREAK, _LINE_BREAK, _WORD_BREAK)
# Bounds the binary search for a hard split; no tokenizer averages more characters per token than this.
_MAX_CHARS_PER_TOKEN = 32


def chunk_sections(
    sections: Sequence[Section],
    count_tokens: TokenCounter,
    size: int,
    overlap: int,
    count_spans: SpanCounting | None = None,
) -> list[ChunkDraft]:
    """Chunks of at most ``size`` tokens as ``count_tokens`` counts them; ordinals 0..n-1 in reading order.

    ``count_spans(text)(start, end)``, when given, must equal ``count_tokens(text[start:end])``."""
    if size < 1:
        raise ValueError("size must be at least 1 token")
    if not 0 <= overlap < size:
        raise ValueError("overlap must be at least 0 and smaller than size")
    spans = count_spans or slice_counter(count_tokens)
    drafts: list[ChunkDraft] = []
    for (page, heading, ocr, keep), text in _merge(sections):
        count = spans(text)
        ids = count.ids if isinstance(count, SpanTokens) else None
        atoms = _atoms(text, count, size, keep_paragraphs=keep)
        for start, end, tokens in _pack(text, atoms, count, size, 0 if keep else overlap):
            token_ids = ids(start, end) if ids is not None else None
            drafts.append(ChunkDraft(len(drafts), text[start:end], page, heading, tokens, token_ids, ocr))
    return drafts


_GroupKey = tuple[int | None, str | None, bool, bool]


def _merge(sections: Sequence[Section]) -> list[tuple[_GroupKey, str]]:
    groups: list[tuple[_GroupKey, list[str]]] = []
    for section in sections:
        if not section.text.strip():
            continue
        key = (section.page, section.heading, section.ocr, section.keep_paragraphs)
        if groups and groups[-1][0] == key:
            groups[-1][1].append(section.text)
        else:
            groups.append((key, [section.text]))
    return [(key, "\n\n".join(texts)) for key, texts in groups]


def _atoms(text: str, count: SpanCounter, size: int, *, keep_paragraphs: bool = False) -> list[_Atom]:
    atoms: list[_Atom] = []
    for start, end in _pieces(text, 0, len(text), _PARAGRAPH_BREAK):
        first = len(atoms)
        tokens = count(start, end) if keep_paragraphs else size + 1
        if tokens <= size:
            atoms.append(_Atom(start, end, tokens))
        else:
            _split(text, start, end, 0, count, size, atoms)
        atoms[first] = replace(atoms[first], opens_paragraph=True)
    return atoms


def _split(text: str, start: int, end: int, level: int, count: SpanCounter, size: int, out: list[_Atom]) -> None:
    for piece_start, piece_end in _pieces(text, start, end, _FALLBACKS[level]):
        tokens = count(piece_start, piece_end)
        if tokens <= size:
            out.append(_Atom(piece_start, piece_end, tokens))
        elif level + 1 < len(_FALLBACKS):
            _split(text, piece_start, piece_end, level + 1, count, size, out)
        else:
            out.extend(_hard_split(piece_start, piece_end, count, size))


def _pieces(text: str, start: int, end: int, separator: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """Spans of ``text[start:end]`` between separator matches, trimmed of whitespace, never empty."""
    position = start
    for match in separator.finditer(text, start, end):
        yield from _trimmed(text, position, match.start())
        position = match.end()
    yield from _trimmed(text, position, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end


def _hard_split(start: int, end: int, count: SpanCounter, size: int) -> Iterator[_Atom]:
    """Longest prefixes that fit, found by binary search (token counts grow with length)."""
    while start < end:
        low, high = 1, min(end - start, size * _MAX_CHARS_PER_TOKEN)
        best, best_tokens = 1, count(start, start + 1)
        while low <= high:
            middle = (low + high) // 2
            tokens = count(start, start + middle)
            if tokens <= size:
                best, best_tokens, low = middle, tokens, middle + 1
            else:
                high = middle - 1
        yield _Atom(start, start + best, best_tokens)
        start += best


def _pack(text: str, atoms: list[_Atom], count: SpanCounter, size: int, overlap: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(start, end, tokens)`` per chunk; ``carry`` holds the overlap taken from the previous one."""
    carry: list[_Atom] = []
    first = 0
    while first < len(atoms):
        carry_tokens = sum(atom.tokens for atom in carry)
        while carry and carry_tokens + atoms[first].tokens > size:
            carry_tokens -= carry.pop(0).tokens
        total = carry_tokens + atoms[first].tokens
        stop = first + 1
        while stop < len(atoms) and total + atoms[stop].tokens <= size:
            total += atoms[stop].tokens
            stop += 1
        stop = _paragraph_stop(atoms, first, stop, total, size)
        while True:
            start = carry[0].start if carry else atoms[first].start
            tokens = count(start, atoms[stop - 1].end)
            if tokens <= size or (stop - first == 1 and not carry):
                break
            if stop - first > 1:
                stop -= 1
            else:
                carry.pop(0)
        yield start, atoms[stop - 1].end, tokens
        if stop < len(atoms) and overlap:
            carry = _overlap(text, [*carry, *atoms[first:stop]], count, overlap)
        first = stop


def _paragraph_stop(atoms: list[_Atom], first: int, stop: int, total: int, size: int) -> int:
    """Move the end back to the last paragraph break when the chunk stays at least half full."""
    if stop >= len(atoms) or atoms[stop].opens_paragraph:
        return stop
    for candidate in range(stop - 1, first, -1):
        total -= atoms[candidate].tokens
        if total * 2 < size:
            break
        if atoms[candidate].opens_paragraph:
            return candidate
    return stop


def _overlap(text: str, members: list[_Atom], count: SpanCounter, overlap: int) -> list[_Atom]:
    """Trailing atoms (never the first, so no chunk is repeated whole), then words of the next one back."""
    carry: list[_Atom] = []
    budget = overlap
    index = len(members) - 1
    while index > 0 and members[index].tokens <= budget:
        carry.insert(0, members[index])
        budget -= members[index].tokens
        index -= 1
    if budget:
        tail = _word_tail(text, members[index], count, budget)
        if tail is not None:
            carry.insert(0, tail)
    return carry


def _word_tail(text: str, atom: _Atom, count: SpanCounter, budget: int) -> _Atom | None:
    """The atom's last words within ``budget`` tokens, never all of them."""
    words = list(_pieces(text, atom.start, atom.end, _WORD_BREAK))
    start, tokens = atom.end, 0
    for word_start, word_end in reversed(words[1:]):
        word_tokens = count(word_start, word_end)
        if tokens + word_tokens > budget:
            break
        start, tokens = word_start, tokens + word_tokens
    return _Atom(start, atom.end, tokens) if tokens else None
