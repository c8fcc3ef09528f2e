"""Token counts (and ids) of texts as the model's tokenizer sees them, without special tokens.

The chunker sizes chunks with these counts, and hands the ids it reads off them to the ONNX runtime
(``content_ids``) so the texts need not be tokenized again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from retrieval.token_spans import OffsetSpans, word_local


class TokenCounter:
    """Counts with a private copy of the model's Rust tokenizer, truncation and padding off.

    The model's own tokenizer is not usable here: transformers re-configures its backend's truncation on
    every call, so a count would come back capped at the model maximum (or race with a concurrent
    ``encode``). The copy is never mutated after setup, so threads can share it. A slow (pure Python)
    tokenizer, which never truncates in ``tokenize()``, is used as it is, without spans or ids.
    """

    def __init__(self, tokenizer: Any) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._span_tokenizer: Any = None  # set only where spans can be read off one text's offsets
        if backend is None:
            self._count: Callable[[str], int] = lambda text: len(tokenizer.tokenize(text))
        else:
            rust = copy.deepcopy(backend)
            rust.no_truncation()
            rust.no_padding()
            self._span_tokenizer = rust if word_local(rust) else None
            self._count = lambda text: len(rust.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        """Word pieces in ``text`` without [CLS]/[SEP]."""
        return self._count(text)

    def spans(self, text: str) -> Callable[[int, int], int]:
        """``count(start, end) == self.count(text[start:end])``, from one tokenization of ``text`` where the
        tokenizer is word-local (``retrieval.token_spans``); that counter also gives the spans' ids."""
        counter = self._count
        rust = self._span_tokenizer
        if rust is None:
            return lambda start, end: counter(text[start:end])
        encoding = rust.encode(text, add_special_tokens=False)
        return OffsetSpans(text, encoding.offsets, counter, encoding.ids)

    def context_ids(self, context: str) -> tuple[int, ...] | None:
        """The ids of ``context`` without special tokens; ``None`` where the tokenizer is not word-local."""
        rust = self._span_tokenizer
        if rust is None:
            return None
        return tuple(rust.encode(context, add_special_tokens=False).ids)
