"""Bytes -> sections, one parser per kind that ``detect_kind`` returns."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from core.errors import UnsupportedType
from ingest.parsers import (
    csv_table,
    docx,
    eml,
    encrypted_office,
    html,
    image,
    markdown,
    pdf,
    pptx,
    text,
    xlsx,
)
from ingest.parsers.base import ParsedDocument, ParseOptions, Section
from ingest.parsers.detect import KINDS, decode_text, detect_kind


class Parser(Protocol):
    def __call__(self, data: bytes, options: ParseOptions) -> ParsedDocument: ...


PARSERS: dict[str, Parser] = {
    "pdf": pdf.parse,
    "text": text.parse,
    "markdown": markdown.parse,
    "html": html.parse,
    "docx": docx.parse,
    "pptx": pptx.parse,
    "xlsx": xlsx.parse,
    "csv": csv_table.parse,
    "email": eml.parse,
    "image": image.parse,
    "encrypted-office": encrypted_office.parse,
}


def parse_document(
    data: bytes, kind: str, *, max_pages: int | None = None, options: ParseOptions | None = None
) -> ParsedDocument:
    """Raises ``DocumentUnreadable`` (with a user-facing reason) when the bytes hold no usable text.

    ``max_pages``, when given, overrides ``options.max_pages`` (the callers from before options existed).
    """
    parser = PARSERS.get(kind)
    if parser is None:
        raise UnsupportedType(f"Unknown document kind {kind!r}; supported: {', '.join(KINDS)}.")
    options = options or ParseOptions()
    if max_pages is not None:
        options = replace(options, max_pages=max_pages)
    return parser(data, options)


__all__ = [
    "KINDS",
    "PARSERS",
    "ParseOptions",
    "ParsedDocument",
    "Section",
    "decode_text",
    "detect_kind",
    "parse_document",
]
