"""Who is using the console, and the browser-side defences of every console response.

The principal is never kept in the session: every request authenticates the session's key again with
the API's own ``authenticate``, so a revoked key ends its console sessions at once and the role and scope
checks that follow are the API's, unchanged. Every state-changing request carries the session's CSRF token
(the ``X-CSRF-Token`` header, which the console's script adds to every htmx and XHR request, or the
``csrf_token`` field of a plain form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import authenticate
from api.console.sessions import CSRF_FIELD, CSRF_HEADER, Session, csrf_matches, session_of
from core.errors import Forbidden, Unauthorized
from core.keys import Principal

CONSOLE_PREFIX = "/ui"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_console_path(path: str) -> bool:
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


class ConsoleHeadersMiddleware:
    """Adds the CSP and its companions to every console response (pages, fragments, errors, static)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name == "Cache-Control" and scope["path"].startswith(CONSOLE_PREFIX + "/static/"):
                        continue
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class SignInRequired(Exception):
    """No signed-in session (or its key stopped working): the console answers with the sign-in page."""


@dataclass(frozen=True)
class ConsoleUser:
    session: Session
    principal: Principal


async def submitted_csrf(request: Request) -> str | None:
    """The header, or the field of a URL-encoded form. A multipart body (an upload) is never parsed here:
    the upload route reads it only after the key, role and scope are checked, so uploads use the header."""
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def require_csrf(request: Request, session: Session) -> None:
    if request.method not in SAFE_METHODS and not csrf_matches(session, await submitted_csrf(request)):
        raise Forbidden("The form's security token is missing or stale: reload the page and try again.")


async def console_user(request: Request) -> ConsoleUser:
    session = session_of(request)
    if session is None or not session.signed_in:
        raise SignInRequired
    await require_csrf(request, session)
    services = request.app.state.services
    authorization = None if session.key is None else f"Bearer {session.key}"
    try:
        principal = await run_in_threadpool(authenticate, services.settings.api_key, services.db, authorization)
    except Unauthorized:
        request.app.state.console_sessions.drop(session.id)
        raise SignInRequired from None
    return ConsoleUser(session=session, principal=principal)


UserDep = Annotated[ConsoleUser, Depends(console_user)]
