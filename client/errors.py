"""Typed errors of the Python client: each carries the server's HTTP status and its ``detail`` message.

They subclass the server's own error types (``core.errors``), so code that catches ``NotFound`` or
``RagError`` works the same whether it runs in-process or against a server through this client.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.errors import (
    BadInput,
    Conflict,
    Forbidden,
    NotFound,
    RagError,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedType,
)


class ApiError(RagError):
    """An answer with a 4xx or 5xx status. ``errors`` holds the per-field problems of a 422."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        RagError.__init__(self, message)
        self.status_code = status
        self.errors = errors or []

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class BadRequestError(ApiError, BadInput):
    """400 or 422: the request was refused as it stands; ``errors`` says which fields, on a 422."""


class AuthenticationError(ApiError, Unauthorized):
    """401: no key, or a key the server does not know (or has revoked)."""


class PermissionDeniedError(ApiError, Forbidden):
    """403: the key's role or collection scope does not allow this."""


class NotFoundError(ApiError, NotFound):
    pass


class ConflictError(ApiError, Conflict):
    pass


class PayloadTooLargeError(ApiError, TooLarge):
    pass


class UnsupportedMediaTypeError(ApiError, UnsupportedType):
    pass


class RateLimitError(ApiError, RateLimited):
    def __init__(self, status: int, message: str, retry_after_s: int) -> None:
        ApiError.__init__(self, status, message)
        self.retry_after_s = retry_after_s


class ServerError(ApiError):
    """500 or another status the client has no type for."""


class ServiceUnavailableError(ApiError, Unavailable):
    """503: a dependency of the server is down; retrying later may help."""


class ConnectionFailed(RagError):
    """The server could not be reached at all (refused, DNS, timeout)."""

    status_code = 0


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: BadRequestError,
    503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error for a 4xx/5xx answer, with the ``detail`` the server wrote (or the raw text)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        message, errors = body["detail"], body.get("errors")
    else:
        message, errors = (response.text.strip() or response.reason_phrase), None
    status = response.status_code
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        return RateLimitError(status, message, int(retry_after) if retry_after.isdigit() else 1)
    return _BY_STATUS.get(status, ServerError)(status, message, errors if isinstance(errors, list) else None)


def check(response: httpx.Response) -> httpx.Response:
    """Raise the typed error of a 4xx/5xx answer; return a successful one unchanged."""
    if response.is_error:
        raise error_from_response(response)
    return response
