"""Word (DOCX) via python-docx: headings become the section path; paragraphs, lists and tables in body order.

DOCX has no pages (the layout engine makes them), so sections carry no page number, only the heading path.
Text is the final text of tracked changes: insertions kept, deletions and moved-from text dropped. Tables
are rendered row by row with the header repeated ("header: value" pairs). Headers and footers are kept
once each, in a section of their own at the end, since they repeat on every page. Comments, macros and
embedded objects are not read.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

from docx import Document as open_docx
from docx.blkcntnr import BlockItemContainer
from docx.document import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml.etree import _Element

from core.errors import DocumentUnreadable
from ingest.parsers.base import HEADING_SEPARATOR, ParsedDocument, ParseOptions, Section, require_text, tidy
from ingest.parsers.office_zip import check_office_zip
from ingest.parsers.rows import render_table

WHAT = "Word document"
_HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)
_SKIPPED = {qn("w:del"), qn("w:moveFrom"), qn("w:instrText"), qn("w:delText")}
_TEXT = qn("w:t")
_BREAKS = {qn("w:br"): "\n", qn("w:cr"): "\n", qn("w:tab"): "\t"}
_PARAGRAPH = qn("w:p")
_TABLE = qn("w:tbl")
_SDT = qn("w:sdt")
_SDT_CONTENT = qn("w:sdtContent")
_CUSTOM_XML = qn("w:customXml")


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    check_office_zip(data, WHAT, options)
    try:
        document = open_docx(io.BytesIO(data))
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception as exc:  # python-docx raises KeyError/ValueError on a package that is not a plain DOCX
        raise DocumentUnreadable(
            f"This {WHAT} cannot be read ({type(exc).__name__}); save it as .docx and upload it again."
        ) from exc
    builder = _Builder(_style_names(document))
    for block in _blocks(document.element.body, document._body):
        if isinstance(block, Paragraph):
            builder.paragraph(block)
        else:
            builder.table(block)
    builder.flush()
    furniture = _headers_and_footers(document)
    if furniture:
        builder.sections.append(Section(text="\n".join(furniture), page=None, heading="Headers and footers"))
    sections = require_text(builder.sections, f"The {WHAT}")
    title = (document.core_properties.title or "").strip() or builder.title
    return ParsedDocument(sections=sections, page_count=None, title=title or None)


class _Builder:
    def __init__(self, style_names: dict[str | None, str]) -> None:
        self.style_names = style_names
        self.sections: list[Section] = []
        self.title: str | None = None
        self._path: list[tuple[int, str]] = []
        self._blocks: list[str] = []

    def paragraph(self, paragraph: Paragraph) -> None:
        text = tidy(element_text(paragraph._p))
        style = self.style_names.get(paragraph._p.style, "").lower()
        level = _heading_level(style)
        if level is not None:
            self._heading(level, " ".join(text.split()))
        elif text:
            self._blocks.append(f"- {text}" if _is_list_item(paragraph, style) else text)

    def table(self, table: Table) -> None:
        self.flush()
        try:
            records = render_table(table_rows(table))
        except (ValueError, IndexError, KeyError):  # python-docx on an irregular grid: keep the cells' text
            records = [" ".join(element_text(table._tbl).split())]
        if records:
            self.sections.append(
                Section(text="\n\n".join(records), page=None, heading=self._heading_path(), keep_paragraphs=True)
            )

    def flush(self) -> None:
        if self._blocks:
            self.sections.append(Section(text="\n\n".join(self._blocks), page=None, heading=self._heading_path()))
        self._blocks = []

    def _heading(self, level: int, title: str) -> None:
        self.flush()
        if not title:
            return
        if self.title is None and level <= 1:
            self.title = title
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))

    def _heading_path(self) -> str | None:
        return HEADING_SEPARATOR.join(title for _, title in self._path) or None


def _blocks(parent: _Element, owner: BlockItemContainer) -> Iterator[Paragraph | Table]:
    """Paragraphs and tables in body order, including those inside content controls (``w:sdt``: cover pages,
    tables of contents, form fields) and custom-XML wrappers, which python-docx's own iteration skips."""
    for child in parent:
        if child.tag == _PARAGRAPH:
            yield Paragraph(child, owner)
        elif child.tag == _TABLE:
            yield Table(child, owner)
        elif child.tag == _SDT:
            content = child.find(_SDT_CONTENT)
            if content is not None:
                yield from _blocks(content, owner)
        elif child.tag == _CUSTOM_XML:
            yield from _blocks(child, owner)


def element_text(element: _Element) -> str:
    """Final text under ``element``: runs, tabs and breaks, without deleted or field-code text; one line per
    paragraph."""
    return "".join(_walk(element)).strip()


def _walk(element: _Element) -> Iterator[str]:
    for child in element:
        tag = child.tag
        if tag in _SKIPPED:
            continue
        if tag == _TEXT:
            yield child.text or ""
        elif tag in _BREAKS:
            yield _BREAKS[tag]
        else:
            yield from _walk(child)
            if tag == _PARAGRAPH:
                yield "\n"


def table_rows(table: Table) -> Iterator[list[str]]:
    """Each row's cell texts; a merged cell (python-docx repeats it per grid column) counts once."""
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(element_text(cell._tc).split()))
        yield cells


def _style_names(document: Document) -> dict[str | None, str]:
    """Style id -> name, read once: python-docx's ``paragraph.style`` scans every style on each call
    (~2 ms a paragraph in a default document). ``None`` (no style set) maps to the default paragraph style."""
    names: dict[str | None, str] = {}
    for style in document.styles:
        names[style.style_id] = style.name or ""
    default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    names[None] = (default.name or "") if default is not None else ""
    return names


def _heading_level(style: str) -> int | None:
    if style == "title":
        return 0
    found = _HEADING_STYLE.match(style)
    return int(found.group(1)) if found else None


def _is_list_item(paragraph: Paragraph, style: str) -> bool:
    properties = paragraph._p.pPr
    if properties is not None and properties.numPr is not None:
        return True
    return style.startswith("list")


def _headers_and_footers(document: Document) -> list[str]:
    """Distinct header and footer lines across the document's sections, in first-seen order."""
    seen: dict[str, None] = {}
    for section in document.sections:
        for part in (
            section.header,
            section.first_page_header,
            section.even_page_header,
            section.footer,
            section.first_page_footer,
            section.even_page_footer,
        ):
            if part.is_linked_to_previous:
                continue
            for line in tidy(element_text(part._element)).split("\n"):
                if line.strip():
                    seen.setdefault(line.strip(), None)
    return list(seen)
