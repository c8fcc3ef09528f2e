"""PDF via pypdf: sections per page, cut again where the PDF's outline says a chapter starts.

Page numbers are 1-based physical pages (what a viewer's page box shows), not printed page labels.
Failures end the document with a message the uploader can act on: decrypt it, OCR it, re-export it.
Pages without a text layer (scans) are rendered with pdfium and read by the configured OCR engine when one
is on; their sections are marked ``ocr``. Pages that have text are never OCR'd.
"""

from __future__ import annotations

import io
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator

import pypdfium2 as pdfium
from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import DependencyError
from pypdf.generic import Destination

from core.errors import DocumentUnreadable
from ingest.parsers.base import HEADING_SEPARATOR, ParsedDocument, ParseOptions, Section, tidy
from ingest.parsers.ocr_pages import MAX_PIXELS, PageReader, page_reader

log = logging.getLogger(__name__)

HeadingPath = tuple[str, ...]

_DAMAGED = "This PDF is damaged or truncated and cannot be read; re-export or re-save it and upload it again."
_NO_TEXT = (
    "This PDF has no extractable text (scanned or image-only); run OCR first "
    "(for example `ocrmypdf in.pdf out.pdf`) and upload the result."
)
_NO_TEXT_AFTER_OCR = (
    "No text was found in this PDF: it has no text layer, and OCR ({engine}) found no text on its pages either. "
    "If it holds text, upload a sharper scan (300 dpi) or a copy with a text layer."
)
# A word broken across lines by a hyphen ("adip-\niscing"); only rejoined when the next line starts lowercase,
# so "Jean-\nPaul" keeps its hyphen.
_LINE_BREAK_HYPHEN = re.compile(r"(?<=[^\W\d_])-\n(?=[^\W\d_])")
# Table-of-contents leaders ("Kompaktheit . . . . 17") carry nothing and read as dozens of sentence ends.
_DOT_LEADER = re.compile(r"(?:\. ?){4,}")
_SECTION_NUMBER = re.compile(r"(?:\d+|[IVXLC]+|[A-Z])(?:\.\d+)*\.?\s+")
_DIGITS = re.compile(r"\d+")
_RUNNING_LINE_PAGES = 3
# Text drawn this far outside the crop box counts as off-page (ImageMagick writes labels there).
_OFF_PAGE_MARGIN = 0.1


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    max_pages = options.max_pages
    reader = _open(data)
    try:
        page_count = len(reader.pages)
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception as exc:  # pypdf raises many error types on a broken page tree
        raise DocumentUnreadable(_DAMAGED) from exc
    if page_count > max_pages:
        raise DocumentUnreadable(
            f"This PDF has {page_count} pages, over the limit of {max_pages}; split it into smaller files."
        )
    texts = [_page_text(page, index) for index, page in enumerate(reader.pages)]
    ocr_reader = page_reader(options)
    scanned = set()
    if ocr_reader is not None and "" in texts:
        scanned = _ocr_blank_pages(data, texts, ocr_reader, options.ocr_dpi)
    outline = _outline_by_page(reader)
    sections: list[Section] = []
    heading: HeadingPath = ()
    for index, text in enumerate(_drop_running_lines([text or "" for text in texts])):
        pieces = list(_cut_at_headings(text, heading, outline.get(index, [])))
        sections.extend(
            Section(text=piece, page=index + 1, heading=HEADING_SEPARATOR.join(path) or None, ocr=index in scanned)
            for piece, path in pieces
            if piece
        )
        heading = pieces[-1][1]
    if not sections:
        if None in texts:
            raise DocumentUnreadable(_DAMAGED)
        raise DocumentUnreadable(_NO_TEXT_AFTER_OCR.format(engine=ocr_reader.engine_name) if ocr_reader else _NO_TEXT)
    return ParsedDocument(
        sections=sections,
        page_count=page_count,
        title=_title(reader, outline),
        ocr_engine=ocr_reader.engine_name if ocr_reader and scanned else None,
    )


def _ocr_blank_pages(data: bytes, texts: list[str | None], reader: PageReader, dpi: int) -> set[int]:
    """OCR every page whose text layer is empty, in place in ``texts``; returns the 0-based pages it filled.

    A page pdfium cannot render keeps its empty text (the rest of the document still counts).
    """
    filled: set[int] = set()
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError:
        log.warning("pdf: pdfium cannot open the file; pages without text stay empty", exc_info=True)
        return filled
    try:
        for index, text in enumerate(texts):
            if text != "" or index >= len(document):
                continue
            try:
                page = document[index]
                width, height = page.get_size()
                scale = min(dpi / 72, math.sqrt(MAX_PIXELS / max(width * height, 1.0)))
                image = page.render(scale=scale).to_pil()
            except pdfium.PdfiumError:
                log.warning("pdf page %d: pdfium cannot render it", index + 1, exc_info=True)
                continue
            found = reader.read(image)
            if found:
                texts[index] = found
                filled.add(index)
    finally:
        document.close()
    return filled


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception as exc:  # pypdf raises many error types on malformed input
        raise DocumentUnreadable(_DAMAGED) from exc
    if not encrypted:
        return reader
    # Many PDFs are "encrypted" with an empty user password only to restrict printing; those open fine.
    try:
        opened = reader.decrypt("")
    except DependencyError as exc:
        raise DocumentUnreadable(
            "This PDF is AES-encrypted and this server cannot decrypt it; upload a decrypted copy."
        ) from exc
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception as exc:  # same as above: a broken encryption dictionary
        raise DocumentUnreadable(_DAMAGED) from exc
    if opened == PasswordType.NOT_DECRYPTED:
        raise DocumentUnreadable("This PDF is password-protected; upload a decrypted copy.")
    return reader


def _page_text(page: PageObject, index: int) -> str | None:
    """Cleaned text of one page, "" when it has none, None when pypdf fails on it (the rest still count)."""
    box = page.cropbox
    left, bottom, right, top = (float(v) for v in (box.left, box.bottom, box.right, box.top))
    margin = _OFF_PAGE_MARGIN * max(right - left, top - bottom)
    visible = False

    def on_text(text: str, cm: list[float], tm: list[float], *_: object) -> None:
        nonlocal visible
        if visible or not text.strip():
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        visible = left - margin <= x <= right + margin and bottom - margin <= y <= top + margin

    try:
        raw = page.extract_text(visitor_text=on_text)
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception:  # one bad content stream must not sink the whole document
        log.warning("pdf page %d: text extraction failed", index + 1, exc_info=True)
        return None
    if not visible:
        return ""
    text = tidy(_DOT_LEADER.sub(" ", unicodedata.normalize("NFKC", raw)))
    return _LINE_BREAK_HYPHEN.sub(lambda m: "" if text[m.end()].islower() else "-\n", text)


def _drop_running_lines(texts: list[str]) -> list[str]:
    """Drop page headers and footers: a first or last line that, digits aside, starts or ends 3+ pages.

    Running heads ("12 1.4. ZUSAMMENHANG") and page numbers would otherwise become chunks of their own.
    One line per edge at most, so a page that merely opens like others ("Definition 3") keeps its text.
    """
    edges = Counter(key for text in texts for key in {_line_key(line) for line in _edge_lines(text)})
    kept = []
    for text in texts:
        lines = text.split("\n")
        if lines and edges[_line_key(lines[0])] >= _RUNNING_LINE_PAGES:
            lines.pop(0)
        if lines and edges[_line_key(lines[-1])] >= _RUNNING_LINE_PAGES:
            lines.pop()
        kept.append("\n".join(lines).strip())
    return kept


def _edge_lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [lines[0], lines[-1]] if text else []


def _line_key(line: str) -> str:
    return _DIGITS.sub("#", line.strip().lower())


def _outline_by_page(reader: PdfReader) -> dict[int, list[HeadingPath]]:
    """Heading paths (("1 Basics", "1.2 Spaces")) by the 0-based page where each starts, in outline order."""
    starts: dict[int, list[HeadingPath]] = {}
    try:
        for path, destination in _walk_outline(reader.outline, ()):
            page = reader.get_destination_page_number(destination)
            if page is not None and page >= 0:
                starts.setdefault(page, []).append(path)
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception:  # a broken outline costs headings, not the document
        log.warning("pdf outline unreadable; sections get no headings", exc_info=True)
        return {}
    return starts


def _walk_outline(items: list, parents: HeadingPath) -> Iterator[tuple[HeadingPath, Destination]]:
    """pypdf nests children as a list right after their parent entry."""
    path = parents
    for item in items:
        if isinstance(item, list):
            yield from _walk_outline(item, path)
            continue
        title = _clean_title(item.title)
        if title:
            path = (*parents, title)
            yield path, item


def _cut_at_headings(text: str, heading: HeadingPath, starts: list[HeadingPath]) -> Iterator[tuple[str, HeadingPath]]:
    """Split a page where its outline headings appear; a heading not found in the text starts where we are.

    A cut moves back over a section number ("1.2 ") printed before the title on the same line.
    """
    position = 0
    for path in starts:
        found = _heading_pattern(path[-1]).search(text, position)
        cut = found.start() if found else position
        line_start = max(text.rfind("\n", position, cut) + 1, position)
        if _SECTION_NUMBER.fullmatch(text, line_start, cut):
            cut = line_start
        yield text[position:cut].strip(), heading
        heading, position = path, cut
    yield text[position:].strip(), heading


def _heading_pattern(title: str) -> re.Pattern[str]:
    words = unicodedata.normalize("NFKC", title).split()
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)")


def _title(reader: PdfReader, outline: dict[int, list[HeadingPath]]) -> str | None:
    """The metadata title, else a lone top-level outline entry (a first chapter's title names no document)."""
    try:
        metadata = reader.metadata
        title = _clean_title(metadata.title) if metadata else None
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception:  # broken Info dictionary
        title = None
    if title:
        return title
    tops = {path[0] for paths in outline.values() for path in paths}
    return tops.pop() if len(tops) == 1 else None


def _clean_title(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return tidy(value).replace("\n", " ") or None
