"""Bearer-key check. ``RAG_API_KEY`` unset = open (local development); set = every route but /health."""

from __future__ import annotations

import hmac

from core.errors import Unauthorized


def check_bearer(expected: str | None, authorization: str | None) -> None:
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("Invalid API key.")
