"""Sign in with an API key, sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.auth import authenticate
from api.console.security import CONSOLE_PREFIX, UserDep, require_csrf
from api.console.sessions import SessionStore, clear_session_cookie, session_of, set_session_cookie
from api.console.site import page, see_other
from core.errors import Forbidden, Unauthorized

router = APIRouter(prefix=CONSOLE_PREFIX)


def store(request: Request) -> SessionStore:
    return request.app.state.console_sessions


@router.get("/")
def home() -> RedirectResponse:
    return see_other(f"{CONSOLE_PREFIX}/collections")


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    """A fresh anonymous session carries the form's CSRF token; sign-in replaces it."""
    session = session_of(request)
    if session is not None and session.signed_in:
        return see_other(f"{CONSOLE_PREFIX}/collections")  # type: ignore[return-value]
    if session is None:
        session = store(request).new()
    response = page(request, "login.html", None, csrf=session.csrf)
    set_session_cookie(request, response, session)
    return response


@router.post("/login")
async def login(request: Request, api_key: Annotated[str, Form(max_length=512)] = "") -> Response:
    anonymous = session_of(request)
    if anonymous is None:
        raise Forbidden("The sign-in form expired: reload the page and try again.")
    await require_csrf(request, anonymous)
    key = api_key.strip() or None
    services = request.app.state.services
    try:
        await run_in_threadpool(authenticate, services.settings.api_key, services.db, key and f"Bearer {key}")
    except Unauthorized:
        response = page(request, "login.html", None, 401, csrf=anonymous.csrf, failed=True)
        return response
    store(request).drop(anonymous.id)
    session = store(request).new(key=key, signed_in=True)
    response = see_other(f"{CONSOLE_PREFIX}/collections")
    set_session_cookie(request, response, session)
    return response


@router.post("/logout")
def logout(request: Request, user: UserDep) -> Response:
    store(request).drop(user.session.id)
    response = see_other(f"{CONSOLE_PREFIX}/login")
    clear_session_cookie(response)
    return response
