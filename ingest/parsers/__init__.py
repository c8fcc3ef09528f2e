"""Bytes -> sections, one parser per kind that ``detect_kind`` returns."""

from __future__ import annotations

from typing import Protocol

from core.errors import UnsupportedType
from ingest.parsers import html, markdown, pdf, text
from ingest.parsers.base import ParsedDocument, Section
from ingest.parsers.detect import KINDS, decode_text, detect_kind


class Parser(Protocol):
    def __call__(self, data: bytes, *, max_pages: int = ...) -> ParsedDocument: ...


PARSERS: dict[str, Parser] = {
    "pdf": pdf.parse,
    "text": text.parse,
    "markdown": markdown.parse,
    "html": html.parse,
}


def parse_document(data: bytes, kind: str, *, max_pages: int) -> ParsedDocument:
    """Raises ``DocumentUnreadable`` (with a user-facing reason) when the bytes hold no usable text."""
    parser = PARSERS.get(kind)
    if parser is None:
        raise UnsupportedType(f"Unknown document kind {kind!r}; supported: {', '.join(KINDS)}.")
    return parser(data, max_pages=max_pages)


__all__ = ["KINDS", "PARSERS", "ParsedDocument", "Section", "decode_text", "detect_kind", "parse_document"]
