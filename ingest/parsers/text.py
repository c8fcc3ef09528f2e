"""Plain text: one section; the chunker finds paragraphs and sentences inside it."""

from __future__ import annotations

from ingest.parsers.base import ParsedDocument, Section, require_text, tidy
from ingest.parsers.detect import decode_text


def parse(data: bytes, *, max_pages: int = 2000) -> ParsedDocument:
    """``max_pages`` only exists so every parser shares one signature; text has no pages."""
    sections = require_text([Section(text=tidy(decode_text(data)), page=None, heading=None)], "The text file")
    return ParsedDocument(sections=sections, page_count=None, title=None)
