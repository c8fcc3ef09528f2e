"""Password-protected Office files (OOXML inside an encrypted OLE container): refused with what to do.

Detected by content (``detect.py``); reading one would take the password, which uploads do not carry.
"""

from __future__ import annotations

from core.errors import DocumentUnreadable
from ingest.parsers.base import ParsedDocument, ParseOptions

MESSAGE = (
    "This Office file is password-protected (encrypted); remove the password (File > Info > Protect, or save a "
    "copy without one) and upload it again."
)


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    raise DocumentUnreadable(MESSAGE)
