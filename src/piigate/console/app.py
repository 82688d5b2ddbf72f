"""The console inside ``piigate serve``: its pages, its static files and its headers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from piigate.config import Settings
from piigate.console import (
    alerts,
    approvals_page,
    audit_page,
    live,
    me,
    oidc,
    policy_page,
    signin,
    stepup,
    subjects,
)
from piigate.console.web import (
    STATIC_DIR,
    ConsoleHeaders,
    NotSecurityTeam,
    NotSignedIn,
    page,
    sign_in_redirect,
    viewer_of,
)

__all__ = ["STATIC_PATH", "install_console"]

STATIC_PATH = "/static"


def install_console(app: FastAPI, settings: Settings) -> None:
    """Add the console's pages to ``app`` (the API's app: one origin, one session cookie)."""
    modules = (signin, stepup, me, live, alerts, subjects, approvals_page, policy_page, audit_page)
    for module in modules:
        app.include_router(module.router)
    app.include_router(oidc.router_for(settings))
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        return sign_in_redirect(request)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        viewer = await viewer_of(request)
        return page(request, "forbidden.html", viewer=viewer, status_code=403)

    app.add_exception_handler(NotSignedIn, to_sign_in)
    app.add_exception_handler(NotSecurityTeam, not_allowed)
    # A step-up's form may end at a return_to origin (CSP form-action covers the redirect).
    form_origins = (*settings.allowed_origins, *settings.return_to_origins)
    app.add_middleware(ConsoleHeaders, form_origins=form_origins)
