"""E-mail (.eml, RFC 5322 / MIME) via the standard library's ``email`` package with ``policy.default``.

Subject, From, To, Cc and Date are the document's metadata and also the text of its first section, so a
search for a sender or a subject finds the message. The body is the plain-text part, or the HTML part read
by the HTML parser when there is no plain one. Attachments whose type is supported are parsed (inside the
same sandboxed parse, under the same limits) into sections of this document, each headed
"Attachment: <name>"; an e-mail attached to an e-mail nests at most ``max_attachment_depth`` levels. An
attachment that cannot be read leaves a line saying so instead of failing the message.
"""

from __future__ import annotations

import email
from email import policy
from email.errors import MessageError
from email.message import EmailMessage, Message

from core.errors import RagError
from ingest.parsers import html
from ingest.parsers.base import HEADING_SEPARATOR, ParsedDocument, ParseOptions, Section, require_text, tidy
from ingest.parsers.detect import detect_kind

HEADERS = ("subject", "from", "to", "cc", "date")
ATTACHMENT = "Attachment"


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    return parse_message(data, options or ParseOptions(), depth=0)


def parse_message(data: bytes, options: ParseOptions, depth: int) -> ParsedDocument:
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
    for part in message.iter_attachments():
        sections.extend(_attachment(part, options, depth))
    return ParsedDocument(
        sections=require_text(sections, "The e-mail"), page_count=None, title=subject, metadata=metadata
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


def _attachment(part: EmailMessage, options: ParseOptions, depth: int) -> list[Section]:
    from ingest.parsers import parse_document  # the registry imports this module

    name = part.get_filename() or f"unnamed {part.get_content_type()}"
    heading = f"{ATTACHMENT}: {name}"
    inner = part.get_payload()
    if part.get_content_type() == "message/rfc822" and isinstance(inner, list) and inner:
        data = inner[0].as_bytes(policy=policy.default)
    else:  # any other part, or a message part a sender base64-encoded anyway
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    if not data:
        return []
    try:
        kind = detect_kind(data, name, part.get_content_type())
        if kind == "email" and depth + 1 > options.max_attachment_depth:
            raise RagError(f"e-mails nested deeper than {options.max_attachment_depth} are not read")
        if kind == "email":
            parsed = parse_message(data, options, depth + 1)
        else:
            parsed = parse_document(data, kind, options=options)
    except RagError as exc:
        return [Section(text=f"{heading} was not indexed: {exc.message}", page=None, heading=heading)]
    except MemoryError:  # the sandbox's memory limit: the whole message is over it
        raise
    except Exception as exc:  # a parser bug on a hostile attachment fails the attachment, not the message
        reason = f"it could not be parsed ({type(exc).__name__}); it may be damaged"
        return [Section(text=f"{heading} was not indexed: {reason}.", page=None, heading=heading)]
    return [_under(section, heading) for section in parsed.sections]


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
