"""Decide a document's kind from its bytes; the filename only picks among text formats.

Clients lie about types (browsers send ``application/octet-stream``, files get renamed), so content
decides: PDF by its magic, anything else must decode as text. Text encodings tried, in order:
a BOM (UTF-32, UTF-8, UTF-16), strict UTF-8, then Windows-1252 and finally Latin-1 (which decodes any
byte). Because the last step accepts anything, the result must then *look* like text: no NUL byte and
at most 1% control characters; otherwise it is binary and refused. UTF-16 without a BOM is not guessed
(it is full of NULs and is refused as binary).
"""

from __future__ import annotations

import codecs
import re
from pathlib import PurePath

from core.errors import BadInput, UnsupportedType

KINDS = ("pdf", "text", "markdown", "html")
SUPPORTED = "PDF, plain text (UTF-8, UTF-16 with BOM, Windows-1252/Latin-1), Markdown and HTML"

_MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown", ".mkd", ".mkdn"}
_HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
_MARKDOWN_TYPES = {"text/markdown", "text/x-markdown"}
_HTML_TYPES = {"text/html", "application/xhtml+xml"}

# Checked only to name a refused file in the error message; acceptance never depends on this table.
_BINARY_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (e.g. .docx, .xlsx, .epub)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (.doc, .xls, .ppt)"),
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
    if suffix in _MARKDOWN_EXTENSIONS or (not suffix and mime in _MARKDOWN_TYPES):
        return "markdown"
    return "text"


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
