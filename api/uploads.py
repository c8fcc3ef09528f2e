"""Reading a multipart upload only after the caller is trusted, and never more than the limits allow.

The upload routes declare no form parameters (FastAPI would read and spool the whole body before any
dependency runs); they check the key, role, scope, collection and rate limit first, then the declared
Content-Length, and only then stream the body through a counting reader into a bounded parser:

- the whole body: at most ``files x RAG_MAX_UPLOAD_MB`` plus ``FORM_OVERHEAD_BYTES``, counted while it
  streams (a chunked body has no Content-Length to check up front), 413 at the first byte over;
- each file: at most ``RAG_MAX_UPLOAD_MB``, counted per part while it streams, 413;
- files per request ``RAG_MAX_FILES_PER_REQUEST``, other fields ``MAX_FORM_FIELDS`` of at most
  ``MAX_FIELD_BYTES`` each, part headers ``MAX_PART_HEADER_BYTES`` and ``MAX_PART_HEADERS``: 422.

A body refused part-way is not drained: the server answers and closes that connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from fastapi import Request
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from core.errors import BadInput, TooLarge

FORM_OVERHEAD_BYTES = 1024 * 1024
MAX_FORM_FIELDS = 8
MAX_FIELD_BYTES = 128 * 1024
MAX_PART_HEADER_BYTES = 8 * 1024
MAX_PART_HEADERS = 16
_BOOL = TypeAdapter(bool)


class _Refused(MultiPartException):
    """Raised inside the parser so that it closes its spooled files; carries the error to answer with."""

    def __init__(self, error: TooLarge | BadInput) -> None:
        super().__init__(error.message)
        self.error = error


class BoundedMultiPartParser(MultiPartParser):
    def __init__(self, *args: object, max_file_bytes: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.max_file_bytes = max_file_bytes
        self._part_bytes = 0
        self._header_bytes = 0
        self._headers = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._part_bytes = self._header_bytes = self._headers = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._part_bytes += end - start
        if self._current_part.file is not None and self._part_bytes > self.max_file_bytes:
            raise _Refused(TooLarge(too_large_message(self._current_part.file.filename, self.max_file_bytes)))
        super().on_part_data(data, start, end)

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        super().on_header_field(data, start, end)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        super().on_header_value(data, start, end)

    def on_header_end(self) -> None:
        self._headers += 1
        if self._headers > MAX_PART_HEADERS:
            raise _Refused(BadInput(f"A form part has more than {MAX_PART_HEADERS} headers."))
        super().on_header_end()

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise _Refused(BadInput(f"A form part's headers exceed {MAX_PART_HEADER_BYTES // 1024} KB."))


def too_large_message(filename: str | None, limit: int) -> str:
    return f"{filename or 'The file'} is larger than the {limit / 1024 / 1024:g} MB limit (RAG_MAX_UPLOAD_MB)."


def body_limit(max_files: int, max_file_bytes: int) -> int:
    return max_files * max_file_bytes + FORM_OVERHEAD_BYTES


def check_declared_length(request: Request, limit: int, max_file_bytes: int) -> None:
    """Refuse on the Content-Length header alone, before a byte of the body is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise BadInput("Content-Length must be a whole number of bytes.")
    if int(declared) > limit:
        raise TooLarge(
            f"The request body is {int(declared) / 1e6:.1f} MB; files may be at most "
            f"{max_file_bytes / 1024 / 1024:g} MB each (RAG_MAX_UPLOAD_MB)."
        )


async def counted(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise _Refused(TooLarge(f"The request body exceeds {limit / 1e6:.1f} MB; it was not read further."))
        yield chunk


@dataclass
class UploadForm:
    files: list[UploadFile]
    metadata: str | None
    replace: bool
    form: FormData

    async def close(self) -> None:
        await self.form.close()


async def read_upload_form(request: Request, field: str, max_files: int, max_file_bytes: int) -> UploadForm:
    """Parse the body of a trusted upload request; the caller closes the result."""
    limit = body_limit(max_files, max_file_bytes)
    check_declared_length(request, limit, max_file_bytes)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise BadInput(f"Send the {field!r} field as multipart/form-data.")
    try:
        async with aclosing(counted(request.stream(), limit)) as stream:
            parser = BoundedMultiPartParser(
                request.headers,
                stream,
                max_files=max_files,
                max_fields=MAX_FORM_FIELDS,
                max_part_size=MAX_FIELD_BYTES,
                max_file_bytes=max_file_bytes,
            )
            form = await parser.parse()
    except _Refused as exc:
        raise exc.error from None
    except MultiPartException as exc:
        raise BadInput(f"The multipart body was refused: {exc.message}") from None
    try:
        return UploadForm(
            files=form_files(form, field), metadata=text_field(form, "metadata"), replace=bool_field(form), form=form
        )
    except BadInput:
        await form.close()
        raise


def form_files(form: FormData, field: str) -> list[UploadFile]:
    files = form.getlist(field)
    if not files or not all(isinstance(f, UploadFile) for f in files):
        raise BadInput(f"The {field!r} field must carry a file.")
    return files  # type: ignore[return-value]


def text_field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise BadInput(f"The {name!r} field must be text, not a file.")
    return value


def bool_field(form: FormData) -> bool:
    value = text_field(form, "replace")
    if value is None:
        return False
    try:
        return _BOOL.validate_python(value)
    except ValidationError:
        raise BadInput("replace must be true or false.") from None


def multipart_openapi(field: str, many: bool) -> dict[str, object]:
    """The request body these routes read by hand, for the OpenAPI document."""
    binary = {"type": "string", "format": "binary"}
    file_schema = {"type": "array", "items": binary, "minItems": 1} if many else binary
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": [field],
                        "properties": {
                            field: {**file_schema, "description": "PDF, plain text, Markdown or HTML"},
                            "metadata": {
                                "type": "string",
                                "description": 'JSON object, e.g. {"tags": ["a"]} (at most 64 KB, 16 levels)',
                            },
                            "replace": {
                                "type": "boolean",
                                "default": False,
                                "description": "Replace same-named documents in this collection by this upload.",
                            },
                        },
                    }
                }
            },
        }
    }
