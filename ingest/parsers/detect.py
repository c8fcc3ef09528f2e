"""Decide a document's kind from its bytes; the filename only picks among text formats.

Clients lie about types (browsers send ``application/octet-stream``, files get renamed), so content
decides: PDF, PNG, JPEG and TIFF by their magic; Office files (ZIP archives) by the main part their
archive holds (``word/document.xml``, ``ppt/presentation.xml``, ``xl/workbook.xml``); a password-protected
Office file by the ``EncryptedPackage`` stream of its OLE container; an e-mail by its RFC 5322 header
block. Anything else must decode as text, and the filename or declared type then picks CSV, Markdown or
HTML (which also wins by content when the text starts as an HTML page). Text encodings tried, in order:
a BOM (UTF-32, UTF-8, UTF-16), strict UTF-8, then Windows-1252 and finally Latin-1 (which decodes any
byte). Because the last step accepts anything, the result must then *look* like text: no NUL byte and
at most 1% control characters; otherwise it is binary and refused. UTF-16 without a BOM is not guessed
(it is full of NULs and is refused as binary).
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from pathlib import PurePath

from core.errors import BadInput, UnsupportedType

KINDS = ("pdf", "text", "markdown", "html", "docx", "pptx", "xlsx", "csv", "email", "image", "encrypted-office")
SUPPORTED = (
    "PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), CSV, e-mail (.eml), PNG/JPEG/TIFF images (by OCR), "
    "plain text (UTF-8, UTF-16 with BOM, Windows-1252/Latin-1), Markdown and HTML"
)

_MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown", ".mkd", ".mkdn"}
_HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
_MARKDOWN_TYPES = {"text/markdown", "text/x-markdown"}
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_CSV_EXTENSIONS = {".csv", ".tsv"}
_CSV_TYPES = {"text/csv", "text/tab-separated-values", "application/csv"}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
# The part that makes a ZIP an Office document of each kind (ECMA-376 default part names).
_OFFICE_MAIN_PARTS = (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"), ("xl/workbook.xml", "xlsx"))
_HEADER_LINE = re.compile(r"^[!-9;-~]+:")
_EMAIL_HEADERS = {"from", "to", "subject", "date", "message-id", "mime-version", "received", "return-path", "cc"}

# Checked only to name a refused file in the error message; acceptance never depends on this table.
_BINARY_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive but not a Word, PowerPoint or Excel file (e.g. .zip, .epub, .odt)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (.doc, .xls, .ppt); save it as .docx, .xlsx or .pptx"),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_MAX_CONTROL_RATIO = 0.01
_PDF_MAGIC = b"%PDF-"
# The PDF spec lets readers accept the header anywhere in the first 1024 bytes.
_PDF_HEADER_WINDOW = 1024


def detect_kind(data: bytes, filename: str, declared_type: str | None) -> str:
    """Return one of ``KINDS``; raise ``BadInput`` for an empty file, ``UnsupportedType`` for binary."""
    if not data:
        raise BadInput(f"{filename} is empty.")
    if data.lstrip()[: len(_PDF_MAGIC)] == _PDF_MAGIC:
        return "pdf"
    binary = _binary_kind(data)
    if binary is not None:
        return binary
    try:
        text = decode_text(data, filename)
    except UnsupportedType:
        if _PDF_MAGIC in data[:_PDF_HEADER_WINDOW]:
            return "pdf"
        raise
    if _looks_like_html(text):
        return "html"
    suffix = PurePath(filename).suffix.lower()
    mime = (declared_type or "").split(";")[0].strip().lower()
    if suffix in _HTML_EXTENSIONS or (not suffix and mime in _HTML_TYPES):
        return "html"
    if looks_like_email(text):
        return "email"
    if suffix in _CSV_EXTENSIONS or (not suffix and mime in _CSV_TYPES):
        return "csv"
    if suffix in _MARKDOWN_EXTENSIONS or (not suffix and mime in _MARKDOWN_TYPES):
        return "markdown"
    return "text"


def _binary_kind(data: bytes) -> str | None:
    if data.startswith(_IMAGE_MAGIC):
        return "image"
    if data.startswith(_OLE_MAGIC) and _ENCRYPTED_PACKAGE in data:
        return "encrypted-office"
    if data.startswith(_ZIP_MAGIC):
        return _office_kind(data)
    return None


def _office_kind(data: bytes) -> str | None:
    """The Office kind by the archive's member names (read from its central directory; nothing inflated).

    A truncated archive has no central directory; the names in its local headers (stored uncompressed) then
    decide, so a cut-off Office file reaches its parser and fails there as damaged, not as an unknown type.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        names = {part for part, _ in _OFFICE_MAIN_PARTS if part.encode() in data}
    for part, kind in _OFFICE_MAIN_PARTS:
        if part in names:
            return kind
    return None


def looks_like_email(text: str) -> bool:
    """An RFC 5322 message: it opens with a header block (an mbox "From " line may precede it) that names at
    least two of the usual headers, From among them or a Subject, and every line of the block is a header or
    a folded continuation."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    if lines and lines[0].startswith("From "):
        lines = lines[1:]
    names: set[str] = set()
    for line in lines[:200]:
        if not line.strip():
            break
        if line[0] in " \t" and names:
            continue
        if not _HEADER_LINE.match(line):
            return False
        names.add(line.split(":", 1)[0].strip().lower())
    else:
        return False
    return len(names & _EMAIL_HEADERS) >= 2 and bool(names & {"from", "subject"})


def decode_text(data: bytes, filename: str = "the file") -> str:
    """Decode text bytes by the rules in the module docstring; binary content raises ``UnsupportedType``."""
    text = _decode(data)
    if "\x00" in text or len(_CONTROL.findall(text)) > _MAX_CONTROL_RATIO * len(text):
        raise UnsupportedType(f"{filename} is {_binary_name(data)}, not a document; supported: {SUPPORTED}.")
    return text


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                break
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _binary_name(data: bytes) -> str:
    for magic, name in _BINARY_MAGIC:
        if data.startswith(magic):
            return name
    return "binary data"


def _looks_like_html(text: str) -> bool:
    """Only a document that *starts* as HTML counts: Markdown and text may quote tags further down."""
    head = text.lstrip("\ufeff \t\r\n")[:1024].lower()
    if head.startswith(("<!doctype html", "<html")):
        return True
    return head.startswith(("<?xml", "<!--")) and "<html" in head
