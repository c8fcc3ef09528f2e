"""Mounting the console on the API's app: routes under ``/ui``, static files, headers and error pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.console.security import CONSOLE_PREFIX, ConsoleHeadersMiddleware, ConsoleUser, SignInRequired, is_console_path
from api.console.sessions import CSRF_FIELD, SessionStore, session_of
from core.config import Settings
from core.models import Role

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(Role=Role, CSRF_FIELD=CSRF_FIELD, PREFIX=CONSOLE_PREFIX)
STATUS_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported type",
    422: "Invalid input",
    429: "Slow down",
    503: "Unavailable",
}


def page(
    request: Request, template: str, user: ConsoleUser | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    session = user.session if user else session_of(request)
    return templates.TemplateResponse(
        request,
        template,
        {"user": user, "csrf": session.csrf if session else "", **context},
        status_code=status_code,
    )


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_console_error(request: Request) -> bool:
    return is_console_path(request.url.path)


def error_page(request: Request, status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An error inside the console: a fragment for htmx (its script shows it in the page's alert region),
    a full page otherwise."""
    context = {"status": status, "title": STATUS_TITLES.get(status, "Error"), "detail": detail}
    template = "_error.html" if is_htmx(request) else "error.html"
    response = page(request, template, None, status_code=status, **context)
    response.headers.update(headers or {})
    return response


def mount_console(app: FastAPI, settings: Settings) -> None:
    from api.console.routes import admin, ask, auth, collections, documents

    app.state.console_sessions = SessionStore(settings.console_session_hours * 3600)
    app.mount(f"{CONSOLE_PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for module in (auth, collections, documents, ask, admin):
        app.include_router(module.router, include_in_schema=False)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PREFIX}/", status_code=307)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _: SignInRequired) -> Response:
        target = f"{CONSOLE_PREFIX}/login"
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        if request.method != "GET":
            return error_page(request, 401, "You are signed out: sign in with an API key and try again.")
        return see_other(target)

    app.add_middleware(ConsoleHeadersMiddleware)
