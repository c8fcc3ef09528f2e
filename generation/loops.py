"""Degenerate output: a model repeating itself, detected on words so it works for any backend.

A text *loops* when a run of words is repeated back to back (``X X ...``, any unit length up to
``MAX_UNIT`` words) and the copies cover at least ``MIN_RUN_WORDS`` words, or when a whole sentence of at
least ``MIN_SENTENCE_WORDS`` words comes back later in the text. Small models fall into both ("They are not
evil, but they are evil. They are not evil, but they are evil."; a list that cycles through the same three
sentences). A short phrase said twice ("the Ayes have it, the Ayes have it") or a name used in three
sentences is not a loop. The same rule
serves the evaluation's loop rate and the guard that stops a generation, so "loop rate 0" means exactly
"the guard never let one through".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from generation.sentences import split_sentences

MAX_UNIT = 64
MIN_RUN_WORDS = 12
MIN_SENTENCE_WORDS = 6

_WORD = re.compile(r"\w+")
_SENTENCE_FINISHED = re.compile(r"[.!?…][\"'”’)\]]*$")
_SENTENCE_END_IN = re.compile(r"[.!?…]")
_LAST_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")


def _words(text: str) -> list[tuple[str, int]]:
    """Lower-cased words with the offset where each starts."""
    return [(m.group(0).lower(), m.start()) for m in _WORD.finditer(text)]


def _tail_run(words: list[str]) -> int | None:
    """If ``words`` ends with a looping run, the index where its second copy starts."""
    n = len(words)
    for unit in range(1, min(MAX_UNIT, n // 2) + 1):
        copies = 1
        while (copies + 1) * unit <= n and words[n - unit :] == words[n - (copies + 1) * unit : n - copies * unit]:
            copies += 1
        if copies >= 2 and copies * unit >= MIN_RUN_WORDS:
            return n - (copies - 1) * unit
    return None


def repeated_sentence(text: str) -> int | None:
    """Offset of the first finished sentence that repeats an earlier one word for word, if any."""
    seen: set[tuple[str, ...]] = set()
    for sentence in split_sentences(text):
        if not _SENTENCE_FINISHED.search(sentence.text):
            continue
        words = tuple(word for word, _ in _words(sentence.text))
        if len(words) < MIN_SENTENCE_WORDS:
            continue
        if words in seen:
            return sentence.start
        seen.add(words)
    return None


def _run_start(text: str) -> int | None:
    tokens = _words(text)
    words = [word for word, _ in tokens]
    for end in range(MIN_RUN_WORDS, len(words) + 1):
        second = _tail_run(words[:end])
        if second is not None:
            return tokens[second][1]
    return None


def loop_start(text: str) -> int | None:
    """Character offset where the first repetition begins, or None when the text does not loop."""
    starts = [start for start in (_run_start(text), repeated_sentence(text)) if start is not None]
    return min(starts) if starts else None


def has_loop(text: str) -> bool:
    return loop_start(text) is not None


def cut_loop(text: str) -> str:
    """The text before its first repetition, ended at the last sentence boundary when there is one."""
    start = loop_start(text)
    if start is None:
        return text
    head = text[:start]
    ends = list(_LAST_SENTENCE_END.finditer(head))
    return (head[: ends[-1].end()] if ends else head).rstrip()


@dataclass
class LoopGuard:
    """Fed the pieces of a streamed answer; ``looped`` turns true at the first repetition.

    Checking only the newest words keeps the cost per piece constant: a repetition is found when the word
    that completes it arrives.
    """

    looped: bool = False
    _text: list[str] = field(default_factory=list)
    _words: list[str] = field(default_factory=list)
    _pending: str = ""

    def feed(self, piece: str) -> bool:
        """Adds ``piece``; returns True once the text so far loops."""
        self._text.append(piece)
        # A word may continue in the next piece: only words followed by a non-word character are final.
        self._pending += piece
        complete = list(_WORD.finditer(self._pending))
        if complete and complete[-1].end() == len(self._pending):
            self._pending = self._pending[complete[-1].start() :]
            complete = complete[:-1]
        else:
            self._pending = ""
        for match in complete:
            self._add(match.group(0).lower())
        if not self.looped and _SENTENCE_END_IN.search(piece) and repeated_sentence(self.text) is not None:
            self.looped = True
        return self.looped

    def _add(self, word: str) -> None:
        self._words.append(word)
        if len(self._words) >= MIN_RUN_WORDS and _tail_run(self._words[-2 * MAX_UNIT :]) is not None:
            self.looped = True

    @property
    def text(self) -> str:
        return "".join(self._text)


def guarded(pieces: Iterator[str], guard: LoopGuard) -> Iterator[str]:
    """Yields pieces until the guard sees a loop, then closes ``pieces`` (which stops the generation)."""
    try:
        for piece in pieces:
            yield piece
            if guard.feed(piece):
                return
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
