"""Texts into the transformer's input arrays for the ONNX runtime, identical to the model's ``preprocess``.

Two ways, chosen per model by ``token_id_inputs``: the model's own ``preprocess`` (always right), or the
model's Rust tokenizer driven directly (``TokenIdInputs``), used only where it reproduces ``preprocess``
exactly on probe texts. The fast way orders batches by true token counts, tokenizes a whole call at once
without the GIL, and reuses the ids a caller already has (``content_ids``) instead of tokenizing again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from retrieval.embedding.runtime import ContentIds
from retrieval.onnx_export import tokenizer_of

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class ModelInputs(Protocol):
    """Turns texts into the transformer's input arrays, split so batches can be ordered before they are made."""

    def prepare(
        self, texts: Sequence[str], content_ids: ContentIds | None = None
    ) -> tuple[Sequence[Any], Sequence[int]]:
        """Per text, what ``feeds`` takes and its length (longest first makes batches pad least)."""
        ...

    def feeds(self, items: Sequence[Any]) -> dict[str, np.ndarray]: ...


class PreprocessInputs:
    """The model's own ``preprocess`` per batch, ordered by characters: right for any tokenizer."""

    def __init__(self, model: SentenceTransformer) -> None:
        self._tokenize = tokenizer_of(model)

    def prepare(
        self, texts: Sequence[str], content_ids: ContentIds | None = None
    ) -> tuple[Sequence[Any], Sequence[int]]:
        return texts, [len(text) for text in texts]

    def feeds(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        features = self._tokenize(list(items))
        return {k: np.asarray(v, dtype=np.int64) for k, v in features.items() if k != "modality"}


class TokenIdInputs:
    """One ``encode_batch`` of the model's Rust tokenizer per call, batches ordered by true token counts.

    Ordering by token counts rather than characters keeps the padding fed to the model near zero; padding
    the ids of a batch is cheaper than a tokenizer call per batch, and ``encode_batch`` runs without the GIL.
    Used only where it reproduces ``preprocess`` exactly (``token_id_inputs``).

    With a ``template`` (the special tokens before and after a text, and the length the model reads), ids a
    caller already has (the chunker's, read off each section's one encoding) are wrapped instead of
    tokenizing those texts again.
    """

    def __init__(self, rust: Any, pad_id: int, template: SpecialTokens | None = None) -> None:
        self._rust = rust
        self._pad_id = pad_id
        self._template = template

    def prepare(
        self, texts: Sequence[str], content_ids: ContentIds | None = None
    ) -> tuple[Sequence[Any], Sequence[int]]:
        ids: list[list[int] | None] = [None] * len(texts)
        if content_ids is not None and self._template is not None:
            ids = [self._template.wrap(row) if row is not None else None for row in content_ids]
        missing = [number for number, row in enumerate(ids) if row is None]
        if missing:
            encodings = self._rust.encode_batch([texts[number] for number in missing])
            for number, encoding in zip(missing, encodings, strict=True):
                ids[number] = encoding.ids
        return ids, [len(row) for row in ids if row is not None]

    def feeds(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        width = max(len(row) for row in items)
        ids = np.full((len(items), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=np.int64)
        for number, row in enumerate(items):
            ids[number, : len(row)] = row
            mask[number, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@dataclass(frozen=True)
class SpecialTokens:
    """How the tokenizer frames one text: ``prefix + content[:room] + suffix`` (BERT: [CLS] ... [SEP])."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    max_length: int

    def wrap(self, content: Sequence[int]) -> list[int]:
        room = self.max_length - len(self.prefix) - len(self.suffix)
        return [*self.prefix, *content[:room], *self.suffix]


def special_tokens(rust: Any, plain: Any, probes: Sequence[str]) -> SpecialTokens | None:
    """The framing of the truncating tokenizer ``rust``, if wrapping ``plain``'s ids (same tokenizer, no
    truncation, no special tokens) reproduces it on every probe; else ``None``."""
    framed, content = rust.encode("a").ids, plain.encode("a", add_special_tokens=False).ids
    for start in range(len(framed) - len(content) + 1):
        if framed[start : start + len(content)] == content:
            break
    else:
        return None
    max_length = (rust.truncation or {}).get("max_length")
    if not content or max_length is None:
        return None
    template = SpecialTokens(tuple(framed[:start]), tuple(framed[start + len(content) :]), int(max_length))
    for probe in probes:
        if template.wrap(plain.encode(probe, add_special_tokens=False).ids) != rust.encode(probe).ids:
            return None
    return template


# Texts where a hand-made tokenizer call could part from the model's own: spaces around, case and accents,
# CJK, emoji, control characters, empty; ``token_id_inputs`` adds one longer than the model reads.
INPUT_PROBES = (
    "  Leading and trailing spaces\t",
    "CAPS, ünïcödé, naïve café; 中文字符 and 🙂 emoji",
    "tabs\tand\nnew lines\u00a0and\u2028separators\x00\x07",
    "",
)


def token_id_inputs(model: SentenceTransformer) -> ModelInputs:
    """``TokenIdInputs`` when its ids and masks equal the model's ``preprocess`` on ``INPUT_PROBES`` and a text
    past the model's length, else ``PreprocessInputs`` (a slow tokenizer, a prompt, a lowercasing module,
    other truncation, a tokenizer this cannot configure)."""
    fallback = PreprocessInputs(model)
    try:
        rust = copy.deepcopy(model.tokenizer.backend_tokenizer)
        rust.no_padding()
        rust.enable_truncation(max_length=int(model.max_seq_length))
        plain = copy.deepcopy(rust)
        plain.no_truncation()
        probes = [*INPUT_PROBES, "word " * (2 * int(model.max_seq_length))]
        fast = TokenIdInputs(rust, int(model.tokenizer.pad_token_id), special_tokens(rust, plain, probes))
        expected = fallback.feeds(fallback.prepare(probes)[0])
        got = fast.feeds(fast.prepare(probes)[0])
    except Exception:  # no Rust backend, no pad token, no length: the model's own path is always right
        return fallback
    for name, array in expected.items():
        mine = got.get(name)
        if mine is None or mine.shape != array.shape or not np.array_equal(mine, array):
            return fallback
    return fast
