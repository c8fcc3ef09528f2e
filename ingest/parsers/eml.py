"""E-mail (.eml, RFC 5322 / MIME) via the standard library's ``email`` package with ``policy.default``.

Subject, From, To, Cc and Date are the document's metadata and also the text of its first section, so a
search for a sender or a subject finds the message. The body is the plain-text part, or the HTML part read
by the HTML parser when there is no plain one.

Attachments whose type is supported come back as ``ParsedDocument.attachments``: the pipeline records each
as a document of its own, linked to the message, with its own pages, status and citations (an attachment
that cannot be read then fails alone, with its own message). The message's last section names them, so a
search for an attachment's name finds the message too; one of an unsupported type is named with the reason
it was not indexed. An e-mail attached to an e-mail is an attachment like any other, whose own attachments
are read while its depth (``attachment_depth``, 0 for an uploaded message) is within ``max_attachment_depth``.
"""

from __future__ import annotations

import email
from email import policy
from email.errors import MessageError
from email.message import EmailMessage, Message

from core.errors import RagError
from ingest.parsers import html
from ingest.parsers.base import (
    HEADING_SEPARATOR,
    Attachment,
    ParsedDocument,
    ParseOptions,
    Section,
    require_text,
    tidy,
)
from ingest.parsers.detect import detect_kind

HEADERS = ("subject", "from", "to", "cc", "date")
ATTACHMENTS_HEADING = "Attachments"


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage objects
    metadata = {name: _header(message, name) for name in HEADERS}
    metadata = {name: value for name, value in metadata.items() if value}
    subject = metadata.get("subject")
    sections: list[Section] = []
    if metadata:
        lines = [f"{name.capitalize()}: {value}" for name, value in metadata.items()]
        sections.append(Section(text="\n".join(lines), page=None, heading=subject))
    sections.extend(_body(message, subject))
    attachments: list[Attachment] = []
    lines: list[str] = []
    for part in message.iter_attachments():
        found, line = _attachment(part, options)
        if found is not None:
            attachments.append(found)
        if line:
            lines.append(line)
    if lines:
        heading = HEADING_SEPARATOR.join(part for part in (subject, ATTACHMENTS_HEADING) if part)
        sections.append(Section(text="\n".join(lines), page=None, heading=heading))
    return ParsedDocument(
        sections=require_text(sections, "The e-mail"),
        page_count=None,
        title=subject,
        metadata=metadata,
        attachments=attachments,
    )


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (MessageError, ValueError, IndexError, TypeError):  # a malformed header the policy cannot parse
        value = next((raw for key, raw in message.raw_items() if key.lower() == name), None)
    if value is None:
        return ""
    if name == "date":
        moment = getattr(value, "datetime", None)
        if moment is not None:
            return moment.isoformat()
    return " ".join(str(value).split())


def _body(message: EmailMessage, subject: str | None) -> list[Section]:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return []
    content = _text_content(part)
    if part.get_content_subtype() == "html":
        try:
            parsed = html.parse(content.encode("utf-8"))
        except RagError:
            return []
        return [_under(section, subject) for section in parsed.sections]
    return [Section(text=tidy(content), page=None, heading=subject)]


def _text_content(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError):  # an unknown charset: fall back to the raw bytes as Latin-1
        raw = part.get_payload(decode=True)
        content = raw.decode("latin-1") if isinstance(raw, bytes) else ""
    return content if isinstance(content, str) else ""


def _attachment(part: EmailMessage, options: ParseOptions) -> tuple[Attachment | None, str]:
    """The attachment to index as a document of its own (None when it is not read) and the line naming it."""
    name = part.get_filename() or f"unnamed {part.get_content_type()}"
    inner = part.get_payload()
    if part.get_content_type() == "message/rfc822" and isinstance(inner, list) and inner:
        data = inner[0].as_bytes(policy=policy.default)
    else:  # any other part, or a message part a sender base64-encoded anyway
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    if not data:
        return None, ""
    if options.attachment_depth > options.max_attachment_depth:
        reason = f"attachments of e-mails nested deeper than {options.max_attachment_depth} are not read"
        return None, f"Attachment: {name} was not indexed: {reason}."
    try:
        kind = detect_kind(data, name, part.get_content_type())
    except RagError as exc:
        return None, f"Attachment: {name} was not indexed: {exc.message}"
    return Attachment(filename=name, data=data, kind=kind), f"Attachment: {name}"


def _under(section: Section, heading: str | None) -> Section:
    """The section with ``heading`` prefixed to its own heading path."""
    if not heading:
        return section
    path = HEADING_SEPARATOR.join(part for part in (heading, section.heading) if part)
    return Section(
        text=section.text,
        page=section.page,
        heading=path,
        ocr=section.ocr,
        keep_paragraphs=section.keep_paragraphs,
    )
