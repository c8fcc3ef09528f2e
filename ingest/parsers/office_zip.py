"""Office files (DOCX, PPTX, XLSX) are ZIP archives: check one is safe to hand to a library before any reads it.

Checked from the central directory before a byte is inflated: member count, total uncompressed size and
the compression ratio (a ZIP bomb inflates a few KB into GBs). The sizes a directory declares bound what
``zipfile`` will inflate (it stops at the declared size and fails the CRC), so a lying directory cannot get
past these limits. XML members must carry no DTD: OOXML never uses one, and a DTD is where entity
declarations (billion laughs, external entities) live. Every member is checked, whatever its name (a
package routes parts by content type, so a main document may be named ``x.dat``): one whose first bytes are
XML must not declare a DTD before its root element. The content-type table is parsed with defusedxml,
which refuses DTDs and entities outright. (The libraries behind also parse with entity resolution off:
python-docx and python-pptx through lxml with ``resolve_entities=False``, openpyxl through defusedxml.)
Macros (vbaProject.bin) and embedded objects (OLE, ActiveX) are never read: the parsers take text from the
document XML only.
"""

from __future__ import annotations

import io
import re
import zipfile

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from core.errors import DocumentUnreadable
from ingest.parsers.base import ParseOptions

CONTENT_TYPES = "[Content_Types].xml"
# The prolog (XML declaration, comments, DOCTYPE) ends at the root element; this much always covers it.
_PROLOG_BYTES = 4096
_ROOT_ELEMENT = re.compile(rb"<[A-Za-z_]")
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def check_office_zip(data: bytes, what: str, options: ParseOptions) -> None:
    """Raise ``DocumentUnreadable`` for a damaged archive or one past a limit; return when a library may read it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise DocumentUnreadable(
            f"This {what} is damaged and cannot be opened; re-save it and upload it again."
        ) from exc
    with archive:
        _check_sizes(members, what, options)
        for member in members:
            if not member.is_dir():
                _check_prolog(archive, member, what)
        if CONTENT_TYPES in archive.namelist():
            _check_content_types(archive.read(CONTENT_TYPES), what)


def _check_sizes(members: list[zipfile.ZipInfo], what: str, options: ParseOptions) -> None:
    if len(members) > options.max_archive_members:
        raise DocumentUnreadable(
            f"This {what} holds {len(members):,} parts, over the limit of {options.max_archive_members:,} "
            "(RAG_OFFICE_MAX_MEMBERS); it may be built to exhaust parsers. Re-save it from an Office application."
        )
    uncompressed = sum(member.file_size for member in members)
    compressed = sum(member.compress_size for member in members)
    limit = options.max_archive_mb * 1024 * 1024
    if uncompressed > limit:
        raise DocumentUnreadable(
            f"This {what} unpacks to {uncompressed / 1e6:,.0f} MB, over the limit of {options.max_archive_mb:g} MB "
            "(RAG_OFFICE_MAX_UNCOMPRESSED_MB); split it into smaller files."
        )
    if uncompressed > 1024 * 1024 and uncompressed > options.max_compression_ratio * max(compressed, 1):
        raise DocumentUnreadable(
            f"This {what} compresses {uncompressed / max(compressed, 1):,.0f} to 1, over the limit of "
            f"{options.max_compression_ratio:g} (RAG_OFFICE_MAX_COMPRESSION_RATIO): a ZIP bomb, or a file of "
            "mostly repeated content. Re-save it from an Office application or split it."
        )


def _check_prolog(archive: zipfile.ZipFile, member: zipfile.ZipInfo, what: str) -> None:
    try:
        with archive.open(member) as stream:
            head = stream.read(_PROLOG_BYTES)
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DocumentUnreadable(
            f"This {what} is damaged (part {member.filename} cannot be read); re-save it and upload it again."
        ) from exc
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head.decode("utf-16", errors="ignore").encode()
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return  # not XML (media, a macro project, an embedded object): never parsed, never checked
    root = _ROOT_ELEMENT.search(head)
    if _DTD.search(head, 0, root.start() if root else len(head)):
        raise DocumentUnreadable(
            f"This {what} declares XML entities (part {member.filename}), which Office files never do; it is "
            "refused as hostile. Re-save it from an Office application."
        )


def _check_content_types(xml: bytes, what: str) -> None:
    try:
        fromstring(xml, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise DocumentUnreadable(f"This {what} declares XML entities, which Office files never do.") from exc
    except Exception as exc:  # ParseError and friends: a damaged part
        raise DocumentUnreadable(
            f"This {what} is damaged and cannot be opened; re-save it and upload it again."
        ) from exc
