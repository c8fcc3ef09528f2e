"""What every parser returns, and the text clean-up they share so chunks look alike whatever the source."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from core.errors import DocumentUnreadable

# Joins a heading and its ancestors ("Install > Linux"), so a chunk's heading says where it sits.
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Section:
    """A run of text under one heading on one page: the unit a chunk never crosses.

    ``ocr``: the text was read from an image (marked in chunk payloads). ``keep_paragraphs``: each
    paragraph is a record (a table row rendered as "header: value" pairs) that a chunk never splits unless
    it alone is over the chunk size, and that no overlap repeats in part.
    """

    text: str
    page: int | None
    heading: str | None
    ocr: bool = False
    keep_paragraphs: bool = False


@dataclass(frozen=True)
class ParseOptions:
    """Limits and choices every parser gets; built from ``Settings`` by the pipeline.

    The defaults are the settings' defaults except ``ocr``, which is off unless the caller picks an engine:
    OCR costs seconds a page, so only the pipeline (and tests that ask) turn it on.
    """

    max_pages: int = 2000
    ocr: Literal["auto", "tesseract", "rapidocr", "off"] = "off"
    ocr_dpi: int = 300
    max_rows: int = 100_000
    max_columns: int = 100
    max_archive_mb: float = 512.0
    max_archive_members: int = 10_000
    max_compression_ratio: float = 200.0
    max_attachment_depth: int = 2
    attachment_depth: int = 0
    """How deep the document being parsed is attached (0: uploaded itself; 1: attached to an upload)."""
    docx_revisions: Literal["final", "original"] = "final"
    docx_comments: bool = False


@dataclass(frozen=True)
class Attachment:
    """A file inside a document (an e-mail's attachment) that becomes a document of its own."""

    filename: str
    data: bytes
    kind: str


@dataclass(frozen=True)
class ParsedDocument:
    sections: list[Section]
    page_count: int | None
    title: str | None
    # Facts about the source that are not its text (an e-mail's sender and date); copied into chunk payloads.
    metadata: dict[str, str] = field(default_factory=dict)
    # The OCR engine that read the document's scanned pages; None when no page was read by OCR.
    ocr_engine: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


# C0/C1 controls carry no text (PDF fonts map glyphs to them, latin-1 decodes junk to them); tab, newline,
# vertical tab and form feed are layout and handled as whitespace below.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b\ufeff]")
_INLINE_SPACE = re.compile(r"[^\S\n]+")


def tidy(text: str) -> str:
    """Collapse layout whitespace but keep structure: lines stay lines, blank lines become paragraph breaks.

    The chunker splits on blank lines first, so one blank line between paragraphs is all that must survive.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = _CONTROL.sub("", text)
    paragraphs: list[list[str]] = [[]]
    for raw in text.split("\n"):
        line = _INLINE_SPACE.sub(" ", raw).strip()
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join("\n".join(lines) for lines in paragraphs if lines)


def require_text(sections: list[Section], what: str) -> list[Section]:
    """Drop empty sections; a document left with none is refused, since indexing it would find nothing."""
    kept = [section for section in sections if section.text.strip()]
    if not kept:
        raise DocumentUnreadable(f"{what} contains no text.")
    return kept
