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


def offset_span_counter(
    text: str, offsets: Sequence[tuple[int, int]], count_text: Callable[[str], int]
) -> Callable[[int, int], int]:
    """Tokens in ``text[start:end]``: from ``offsets`` (the whole text's tokens, in order) when both ends sit
    at a word break or the text's ends, else by ``count_text`` on the slice (a cut inside a word tokenizes
    differently on its own)."""
    starts = [start for start, _ in offsets]
    ends = [end for _, end in offsets]
    length = len(text)

    def count(start: int, end: int) -> int:
        if (start == 0 or is_break(text[start - 1])) and (end == length or is_break(text[end])):
            return max(0, bisect_right(ends, end) - bisect_left(starts, start))
        return count_text(text[start:end])

    return count
