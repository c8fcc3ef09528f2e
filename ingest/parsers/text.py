"""Plain text: one section; the chunker finds paragraphs and sentences inside it."""

from __future__ import annotations

from ingest.parsers.base import ParsedDocument, ParseOptions, Section, require_text, tidy
from ingest.parsers.detect import decode_text


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    """Plain text has no pages; ``options`` only exists so every parser shares one signature."""
    sections = require_text([Section(text=tidy(decode_text(data)), page=None, heading=None)], "The text file")
    return ParsedDocument(sections=sections, page_count=None, title=None)
