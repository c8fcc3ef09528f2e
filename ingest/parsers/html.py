"""HTML via BeautifulSoup (html.parser): visible prose only, one section per h1-h6 heading."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString
from bs4.dammit import EncodingDetector

from ingest.parsers.base import HEADING_SEPARATOR, ParsedDocument, ParseOptions, Section, require_text, tidy
from ingest.parsers.detect import decode_text

# Page furniture and non-prose: indexing it would make every page of a site match the same queries.
_DROP = ["head", "script", "style", "noscript", "template", "nav", "footer", "svg", "iframe", "object"]
_HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
_PARAGRAPH_BLOCKS = [
    "p", "div", "section", "article", "main", "aside", "header", "blockquote", "pre", "table",
    "ul", "ol", "dl", "figure", "figcaption", "form", "fieldset", "details", "address", "hr",
]  # fmt: skip
_LINE_BLOCKS = ["li", "tr", "dt", "dd", "caption", "summary"]
_CELLS = ["td", "th"]
_PREFORMATTED = ("pre", "textarea")
_WHITESPACE = re.compile(r"\s+")
# NUL is removed from the page before parsing, so the heading markers cannot collide with its text.
_MARK = "\x00"
_MARKED = re.compile(f"{_MARK}(\\d+){_MARK}")


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    """HTML has no pages; ``options`` only exists so every parser shares one signature."""
    soup = BeautifulSoup(_decode(data).replace(_MARK, ""), "html.parser")
    title = _title(soup)
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(attrs={"hidden": True}):
        tag.decompose()
    _collapse_whitespace(soup)
    headings = _mark_headings(soup)
    _mark_blocks(soup)
    sections = _sections(soup.get_text(), headings)
    return ParsedDocument(sections=require_text(sections, "The HTML page"), page_count=None, title=title)


def _decode(data: bytes) -> str:
    """A charset the page declares wins over guessing; a bad declaration falls back to the usual rules.

    A declared UTF-16/32 is ignored, as browsers do: a page that can be read as ASCII to find its
    <meta> is not UTF-16, and a real UTF-16 page carries a BOM, which ``decode_text`` honours.
    """
    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    if declared and not declared.lower().startswith(("utf-16", "utf-32")):
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_text(data)


def _title(soup: BeautifulSoup) -> str | None:
    found = soup.title or soup.find("h1")
    text = found.get_text(" ", strip=True) if found else ""
    return " ".join(text.split()) or None


def _collapse_whitespace(soup: BeautifulSoup) -> None:
    """Source line breaks mean nothing in HTML; only the markers added below may break lines."""
    for string in soup.find_all(string=True):
        if type(string) is NavigableString and not string.find_parent(_PREFORMATTED):
            string.replace_with(_WHITESPACE.sub(" ", string))


def _mark_headings(soup: BeautifulSoup) -> list[tuple[int, str]]:
    headings: list[tuple[int, str]] = []
    for tag in soup.find_all(_HEADINGS):
        text = " ".join(tag.get_text(" ", strip=True).split())
        tag.replace_with(f"\n\n{_MARK}{len(headings)}{_MARK}\n\n")
        headings.append((int(tag.name[1]), text))
    return headings


def _mark_blocks(soup: BeautifulSoup) -> None:
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_PARAGRAPH_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    # Only after, so list items and table rows stay lines of one paragraph.
    for names, gap in ((_LINE_BLOCKS, "\n"), (_CELLS, " ")):
        for tag in soup.find_all(names):
            tag.insert_after(gap)


def _sections(text: str, headings: list[tuple[int, str]]) -> list[Section]:
    """Cut the page text at the heading markers. A heading is metadata, not text: the pipeline prefixes it."""
    parts = _MARKED.split(text)
    sections = [Section(text=tidy(parts[0]), page=None, heading=None)]
    path: list[tuple[int, str]] = []
    for index, body in zip(parts[1::2], parts[2::2], strict=True):
        level, title = headings[int(index)]
        while path and path[-1][0] >= level:
            path.pop()
        if title:
            path.append((level, title))
        sections.append(Section(text=tidy(body), page=None, heading=_join(path)))
    return sections


def _join(path: list[tuple[int, str]]) -> str | None:
    return HEADING_SEPARATOR.join(title for _, title in path) or None
