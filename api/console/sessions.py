"""Console sessions: the API key stays in this process; the browser holds only a random session id.

A session is created for the sign-in form (it carries the form's CSRF token) and replaced by a new one
at sign-in, so an id planted before sign-in is worthless after it. Sessions live in memory, bounded in
number and age: a restart signs everybody out, and several server processes behind one address need
sticky sessions (the keys themselves are never written anywhere by the console).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from cachetools import TTLCache
from fastapi import Request, Response

COOKIE = "rag_console"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    csrf: str
    signed_in: bool = False
    key: str | None = field(default=None, repr=False)
    """The API key this session acts with; None after sign-in means the API is open (no keys exist)."""


class SessionStore:
    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._sessions: TTLCache[str, Session] = TTLCache(maxsize=MAX_SESSIONS, ttl=lifetime_s)
        self._lock = threading.Lock()

    def new(self, *, key: str | None = None, signed_in: bool = False) -> Session:
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), signed_in=signed_in, key=key)
        with self._lock:
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            return self._sessions.get(session_id)

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)


def session_of(request: Request) -> Session | None:
    store: SessionStore = request.app.state.console_sessions
    return store.get(request.cookies.get(COOKIE))


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure over TLS."""
    store: SessionStore = request.app.state.console_sessions
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(store.lifetime_s),
        path="/ui",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")


def csrf_matches(session: Session, token: str | None) -> bool:
    return token is not None and secrets.compare_digest(token.encode(), session.csrf.encode())
