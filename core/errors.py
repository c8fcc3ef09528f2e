"""Typed errors. Each carries the HTTP status the API maps it to and a message a user can act on."""

from __future__ import annotations


class RagError(Exception):
    status_code: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(RagError):
    status_code = 422


class Unauthorized(RagError):
    status_code = 401


class Forbidden(RagError):
    status_code = 403


class NotFound(RagError):
    status_code = 404


class Conflict(RagError):
    status_code = 409


class RateLimited(RagError):
    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooLarge(RagError):
    status_code = 413


class UnsupportedType(RagError):
    status_code = 415


class Unavailable(RagError):
    """A dependency (vector store, database, LLM) cannot serve now; the client may retry."""

    status_code = 503


class DocumentUnreadable(RagError):
    """The file was accepted but holds no usable text (encrypted, image-only, corrupt, empty).

    The document ends ``failed`` with this message; retrying will not help.
    """

    status_code = 422


class TransientError(RagError):
    """A failure worth retrying (a store or broker hiccup); workers retry these with backoff."""

    status_code = 503
