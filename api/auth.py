"""Who is calling. ``RAG_API_KEY`` is the bootstrap admin key; stored keys carry a role and a scope.

With neither ``RAG_API_KEY`` nor any stored key the API is open (local development only: ``ragctl serve``
always creates a key on first start).
"""

from __future__ import annotations

import hmac

from core.db import Database
from core.errors import Unauthorized
from core.keys import ROOT, Principal, any_keys, principal_for


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def authenticate(root_key: str | None, db: Database, authorization: str | None) -> Principal:
    token = bearer_token(authorization)
    if token is None:
        if root_key is None and not any_keys(db):
            return ROOT
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    if root_key is not None and hmac.compare_digest(token.encode(), root_key.encode()):
        return ROOT
    principal = principal_for(db, token)
    if principal is None:
        raise Unauthorized("Invalid or revoked API key.")
    return principal
