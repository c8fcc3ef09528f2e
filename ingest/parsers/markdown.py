"""Markdown via markdown-it-py: one section per heading, text without markup (code blocks kept verbatim)."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from markdown_it import MarkdownIt
from markdown_it.token import Token

from ingest.parsers.base import HEADING_SEPARATOR, ParsedDocument, ParseOptions, Section, require_text, tidy
from ingest.parsers.detect import decode_text

_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# YAML front matter is not CommonMark; left in, it would parse as a rule plus a setext heading.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*[\"']?(.+?)[\"']?[ \t]*$", re.MULTILINE)


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    """Markdown has no pages; ``options`` only exists so every parser shares one signature."""
    source = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    title = None
    front = _FRONT_MATTER.match(source)
    if front:
        found = _FRONT_MATTER_TITLE.search(front.group(1))
        title = found.group(1).strip() if found else None
        source = source[front.end() :]
    walker = _Walker()
    walker.walk(_MARKDOWN.parse(source))
    sections = walker.sections
    if not any(section.text.strip() for section in sections):
        # A title-only record (a heading, or a front-matter title, and no body) is still text to find it by.
        titles = [name for name in (title, *walker.headings) if name]
        sections = [Section(text="\n\n".join(dict.fromkeys(titles)), page=None, heading=None)]
    sections = require_text(sections, "The Markdown file")
    return ParsedDocument(sections=sections, page_count=None, title=title or walker.first_h1)


class _Walker:
    """Turns the flat token stream into sections; lists and tables become one block each."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.first_h1: str | None = None
        self.headings: list[str] = []
        self._path: list[tuple[int, str]] = []
        self._blocks: list[str] = []
        self._list_depth = 0
        self._list_lines: list[str] = []
        self._table_rows: list[str] | None = None
        self._cells: list[str] = []

    def walk(self, tokens: list[Token]) -> None:
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.type == "heading_open":
                self._heading(int(token.tag[1]), _inline_text(tokens[index + 1]))
                index += 3
                continue
            self._token(token)
            index += 1
        self._flush()

    def _token(self, token: Token) -> None:
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            self._list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self._list_depth -= 1
            if self._list_depth == 0:
                self._block("\n".join(self._list_lines))
                self._list_lines = []
        elif kind == "table_open":
            self._table_rows = []
        elif kind == "tr_close" and self._table_rows is not None:
            self._table_rows.append(" | ".join(self._cells))
            self._cells = []
        elif kind == "table_close" and self._table_rows is not None:
            rows, self._table_rows = self._table_rows, None
            self._emit("\n".join(rows))
        elif kind == "inline":
            self._emit(_inline_text(token))
        elif kind in ("fence", "code_block"):
            self._emit(token.content.strip("\n"), verbatim=True)
        elif kind == "html_block":
            self._emit(BeautifulSoup(token.content, "html.parser").get_text(" ", strip=True))

    def _emit(self, text: str, *, verbatim: bool = False) -> None:
        if self._table_rows is not None:
            self._cells.append(" ".join(text.split()))
        elif self._list_depth:
            self._list_lines.append(text)
        else:
            self._block(text, verbatim=verbatim)

    def _block(self, text: str, *, verbatim: bool = False) -> None:
        """Prose is tidied; code keeps its indentation, which carries meaning."""
        text = text if verbatim else tidy(text)
        if text.strip():
            self._blocks.append(text)

    def _heading(self, level: int, title: str) -> None:
        self._flush()
        title = " ".join(title.split())
        if title:
            self.headings.append(title)
        if level == 1 and self.first_h1 is None:
            self.first_h1 = title or None
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        if title:
            self._path.append((level, title))

    def _flush(self) -> None:
        """Close the current section. Its heading is metadata, not text: the pipeline prefixes it."""
        if self._blocks:
            heading = HEADING_SEPARATOR.join(title for _, title in self._path) or None
            self.sections.append(Section(text="\n\n".join(self._blocks), page=None, heading=heading))
        self._blocks = []


def _inline_text(token: Token) -> str:
    """Text of an inline token without emphasis, link or HTML markup; images contribute their alt text."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
    return "".join(parts).strip()
