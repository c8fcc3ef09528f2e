"""Token counts of many spans of one text from a single tokenization.

The chunker counts every sentence, every candidate chunk and the words of each overlap: about 58 tokenizer
calls per SciFact abstract, 3.5 of the 5 CPU seconds that parsing and chunking 1,000 abstracts took. A
tokenizer that splits text into words at whitespace before it looks inside them (WordPiece behind BERT's
normalizer and pre-tokenizer, as in MiniLM) gives a span that starts and ends at whitespace exactly the
tokens it gives that span inside the whole text; those are read off the whole text's offsets instead.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

# Where BERT's normalizer and pre-tokenizer always break words. Other characters Python calls whitespace
# (vertical tab, form feed, U+0085, the separators 0x1c-0x1f) are control characters that its normalizer
# deletes, which joins their neighbours into one word.
_BREAK_CHARS = frozenset(" \t\n\r")
_BREAK_CATEGORIES = frozenset({"Zs", "Zl", "Zp"})


def word_local(tokenizer: Any) -> bool:
    """Whether a ``tokenizers.Tokenizer`` tokenizes each whitespace-separated word on its own."""
    return (
        type(tokenizer.model).__name__ == "WordPiece"
        and type(tokenizer.pre_tokenizer).__name__ == "BertPreTokenizer"
        and (tokenizer.normalizer is None or type(tokenizer.normalizer).__name__ == "BertNormalizer")
    )


def is_break(char: str) -> bool:
    return char in _BREAK_CHARS or unicodedata.category(char) in _BREAK_CATEGORIES


class OffsetSpans:
    """Tokens of ``text[start:end]`` read off the whole text's tokens (``offsets``, in order, and their
    ``ids`` where given) when both ends sit at a word break or the text's ends. Otherwise a span is counted
    by ``count_text`` on the slice (a cut inside a word tokenizes differently on its own) and has no ids."""

    def __init__(
        self,
        text: str,
        offsets: Sequence[tuple[int, int]],
        count_text: Callable[[str], int],
        ids: Sequence[int] | None = None,
    ) -> None:
        self._text = text
        self._starts = [start for start, _ in offsets]
        self._ends = [end for _, end in offsets]
        self._count_text = count_text
        self._ids = ids

    def _aligned(self, start: int, end: int) -> bool:
        text = self._text
        return (start == 0 or is_break(text[start - 1])) and (end == len(text) or is_break(text[end]))

    def __call__(self, start: int, end: int) -> int:
        if self._aligned(start, end):
            return max(0, bisect_right(self._ends, end) - bisect_left(self._starts, start))
        return self._count_text(self._text[start:end])

    def ids(self, start: int, end: int) -> tuple[int, ...] | None:
        """The span's token ids (no special tokens), or ``None`` where they cannot be read off."""
        if self._ids is None or not self._aligned(start, end):
            return None
        return tuple(self._ids[bisect_left(self._starts, start) : bisect_right(self._ends, end)])
