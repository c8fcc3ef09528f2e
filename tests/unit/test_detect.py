"""Kind detection trusts content over names; the extension only picks among text formats."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.errors import BadInput, UnsupportedType
from ingest.parsers.detect import decode_text, detect_kind
from tests import documents

PDF_BYTES = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
ZIP_BYTES = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(64))


@pytest.mark.parametrize(
    ("data", "filename", "declared", "kind"),
    [
        (PDF_BYTES, "report.pdf", "application/pdf", "pdf"),
        (b"\n  " + PDF_BYTES, "upload", None, "pdf"),
        (b"Just some notes.\n", "notes.txt", "text/plain", "text"),
        (b"# Title\n\nBody", "README.md", None, "markdown"),
        (b"# Title\n\nBody", "README.markdown", "application/octet-stream", "markdown"),
        (b"# Title\n\nBody", "upload", "text/markdown; charset=utf-8", "markdown"),
        (b"<p>A fragment</p>", "page.html", None, "html"),
        (b"<p>A fragment</p>", "upload", "text/html", "html"),
        (b"<!DOCTYPE html><html><body>x</body></html>", "page.txt", "text/plain", "html"),
        (b"<?xml version='1.0'?>\n<html xmlns='http://www.w3.org/1999/xhtml'></html>", "a.xml", None, "html"),
        (b"# Quoting tags\n\nWrite `<html>` at the top.", "tags.md", None, "markdown"),
    ],
)
def test_each_kind(data: bytes, filename: str, declared: str | None, kind: str) -> None:
    assert detect_kind(data, filename, declared) == kind


def test_lying_pdf_extension_is_text() -> None:
    assert detect_kind(b"Not a PDF at all, only text.", "fake.pdf", "application/pdf") == "text"


def test_text_mentioning_the_pdf_magic_stays_text() -> None:
    assert detect_kind(b"A PDF starts with %PDF-1.7 and ends with %%EOF.", "notes.txt", None) == "text"


@pytest.mark.parametrize(
    ("data", "filename", "named"),
    [
        (b"GIF89a\x01\x00\x01\x00" + bytes(32), "anim.txt", "GIF image"),
        (ZIP_BYTES, "letter.docx", "ZIP archive"),
        (bytes(range(256)) * 8, "blob.md", "binary data"),
        ("no BOM".encode("utf-16-le"), "wide.txt", "binary data"),
    ],
)
def test_binary_is_refused_naming_supported_types(data: bytes, filename: str, named: str) -> None:
    with pytest.raises(UnsupportedType) as caught:
        detect_kind(data, filename, "text/plain")
    assert named in caught.value.message
    assert filename in caught.value.message
    for supported in ("PDF", "plain text", "Markdown", "HTML"):
        assert supported in caught.value.message


def test_zero_bytes_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"empty\.txt is empty"):
        detect_kind(b"", "empty.txt", "text/plain")


def test_latin1_text_is_text() -> None:
    data = "Café crème, naïve façade, 20 °C.".encode("latin-1")
    assert detect_kind(data, "menu.txt", None) == "text"
    assert decode_text(data) == "Café crème, naïve façade, 20 °C."


def test_windows_1252_quotes_decode_as_quotes() -> None:
    assert decode_text("“Quoted” – done…".encode("cp1252")) == "“Quoted” – done…"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_byte_order_marks(encoding: str) -> None:
    text = "Grüße, 世界"
    data = text.encode(encoding)
    assert detect_kind(data, "hello.txt", None) == "text"
    assert decode_text(data) == text


def test_a_few_control_characters_are_tolerated() -> None:
    text = "Plain words. " * 20 + "\x1b"
    assert decode_text(text.encode()) == text


@pytest.mark.parametrize(
    ("builder", "kind"),
    [
        (lambda: documents.docx_bytes("T", [("H", ["Body."])]), "docx"),
        (lambda: documents.pptx_bytes([("T", "Body", "")]), "pptx"),
        (lambda: documents.xlsx_bytes({"S": [["a"], ["b"]]}), "xlsx"),
    ],
)
def test_office_files_by_their_main_part_whatever_the_name(builder: Callable[[], bytes], kind: str) -> None:
    data = builder()
    for name, declared in (("report.pdf", "application/pdf"), ("upload", None), ("notes.txt", "text/plain")):
        assert detect_kind(data, name, declared) == kind


@pytest.mark.parametrize(
    "data",
    [PNG_BYTES, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08"],
)
def test_png_jpeg_and_tiff_are_images(data: bytes) -> None:
    assert detect_kind(data, "scan.txt", "text/plain") == "image"


def test_encrypted_office_file_is_its_own_kind() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500) + "EncryptedPackage".encode("utf-16-le") + bytes(100)
    assert detect_kind(ole, "budget.xlsx", None) == "encrypted-office"
    legacy = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)
    with pytest.raises(UnsupportedType, match="legacy Office file"):
        detect_kind(legacy, "old.doc", None)


def test_email_by_its_header_block() -> None:
    mail = documents.eml_bytes("Plan", "ann@example.com", "bob@example.com", "Body.")
    assert detect_kind(mail, "message.txt", "text/plain") == "email"
    mbox = b"From ann@example.com Tue Mar  3 09:30:00 2026\nFrom: ann@example.com\nSubject: Hi\n\nBody\n"
    assert detect_kind(mbox, "upload", None) == "email"
    # Prose that happens to start "Note: ..." is not a message: one header-like line and no blank line after.
    assert detect_kind(b"Note: this is text.\nIt goes on.\n", "n.txt", None) == "text"
    assert detect_kind(b"Title: A\nAuthor: B\n\nBody\n", "n.txt", None) == "text"


def test_csv_by_name_or_declared_type() -> None:
    data = b"name,city\nAda,London\n"
    assert detect_kind(data, "people.csv", None) == "csv"
    assert detect_kind(data, "upload", "text/csv") == "csv"
    assert detect_kind(data, "people.txt", None) == "text"
