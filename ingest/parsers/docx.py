"""Word (DOCX) via python-docx: headings become the section path; paragraphs, lists and tables in body order.

DOCX has no pages (the layout engine makes them), so sections carry no page number, only the heading path.
Tracked changes give the final text by default (insertions kept, deletions and moved-from text dropped), or
the original text (``docx_revisions="original"``: the reverse). Tables are rendered row by row with the
header repeated ("header: value" pairs). Headers and footers are kept once each, in a section of their own
at the end, since they repeat on every page. Comments are left out unless ``docx_comments`` asks for them
(a "Comments" section of "author: text" lines): they are remarks on the document, not its content. Macros
and embedded objects are never read.
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
# Field codes (instrText) are markup, never text. Per revision view: the parts of tracked changes left out,
# and the tags that carry text (deleted runs hold w:delText instead of w:t).
_SKIPPED = {
    "final": frozenset({qn("w:del"), qn("w:moveFrom"), qn("w:instrText")}),
    "original": frozenset({qn("w:ins"), qn("w:moveTo"), qn("w:instrText")}),
}
_TEXTS = {"final": frozenset({qn("w:t")}), "original": frozenset({qn("w:t"), qn("w:delText")})}
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
    view = options.docx_revisions
    if view not in _SKIPPED:
        raise ValueError(f"docx_revisions must be one of {sorted(_SKIPPED)}, not {view!r}")
    builder = _Builder(_style_names(document), view)
    for block in _blocks(document.element.body, document._body):
        if isinstance(block, Paragraph):
            builder.paragraph(block)
        else:
            builder.table(block)
    builder.flush()
    furniture = _headers_and_footers(document, view)
    if furniture:
        builder.sections.append(Section(text="\n".join(furniture), page=None, heading="Headers and footers"))
    remarks = _comments(document) if options.docx_comments else []
    if remarks:
        builder.sections.append(Section(text="\n\n".join(remarks), page=None, heading="Comments"))
    sections = require_text(builder.sections, f"The {WHAT}")
    title = (document.core_properties.title or "").strip() or builder.title
    return ParsedDocument(sections=sections, page_count=None, title=title or None)


class _Builder:
    def __init__(self, style_names: dict[str | None, str], view: str) -> None:
        self.style_names = style_names
        self.view = view
        self.sections: list[Section] = []
        self.title: str | None = None
        self._path: list[tuple[int, str]] = []
        self._blocks: list[str] = []

    def paragraph(self, paragraph: Paragraph) -> None:
        text = tidy(element_text(paragraph._p, self.view))
        style = self.style_names.get(paragraph._p.style, "").lower()
        level = _heading_level(style)
        if level is not None:
            self._heading(level, " ".join(text.split()))
        elif text:
            self._blocks.append(f"- {text}" if _is_list_item(paragraph, style) else text)

    def table(self, table: Table) -> None:
        self.flush()
        try:
            records = render_table(table_rows(table, self.view))
        except (ValueError, IndexError, KeyError):  # python-docx on an irregular grid: keep the cells' text
            records = [" ".join(element_text(table._tbl, self.view).split())]
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


def element_text(element: _Element, view: str = "final") -> str:
    """Text under ``element`` in one revision view: runs, tabs and breaks, without field codes; one line per
    paragraph."""
    return "".join(_walk(element, _SKIPPED[view], _TEXTS[view])).strip()


def _walk(element: _Element, skipped: frozenset[str], texts: frozenset[str]) -> Iterator[str]:
    for child in element:
        tag = child.tag
        if tag in skipped:
            continue
        if tag in texts:
            yield child.text or ""
        elif tag in _BREAKS:
            yield _BREAKS[tag]
        else:
            yield from _walk(child, skipped, texts)
            if tag == _PARAGRAPH:
                yield "\n"


def table_rows(table: Table, view: str = "final") -> Iterator[list[str]]:
    """Each row's cell texts; a merged cell (python-docx repeats it per grid column) counts once."""
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(element_text(cell._tc, view).split()))
        yield cells


def _style_names(document: Document) -> dict[str | None, str]:
    """Style id -> name, read once: python-docx's ``paragraph.style`` scans every style on each call
    (a cost per paragraph that grows with the document's style count). ``None`` (no style set) maps to the
    default paragraph style."""
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


def _headers_and_footers(document: Document, view: str) -> list[str]:
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
            for line in tidy(element_text(part._element, view)).split("\n"):
                if line.strip():
                    seen.setdefault(line.strip(), None)
    return list(seen)


def _comments(document: Document) -> list[str]:
    """ "author: text" per comment, in the order the comments part lists them."""
    lines = []
    for comment in document.comments:
        text = " ".join(comment.text.split())
        if text:
            lines.append(f"{comment.author}: {text}" if comment.author else text)
    return lines
