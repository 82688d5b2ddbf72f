"""Signing in to the console with a local account, and signing out.

``POST /login`` runs the API's login (``stepup/login.py``: the password, throttled as the API
throttles it, then the login decided as ``action: login``). When the policy asks that login to
step up, the login ticket goes into the ``piigate_login_ticket`` cookie (``HttpOnly``,
``SameSite=Strict``, only for the step-up) and the browser is sent to the step-up page, which
completes the login once the challenge is approved (``GET /login/complete``).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from piigate.api.auth import LOGIN_TICKET_COOKIE, SESSION_COOKIE
from piigate.api.context import own_context
from piigate.api.routes.sessions import open_browser_session
from piigate.api.services import get_services
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.forms import form_fields
from piigate.console.web import page, safe_return_to, viewer_of
from piigate.crypto.secret import Secret
from piigate.errors import Forbidden, TooManyRequests, Unauthorized
from piigate.model import Context
from piigate.risk.devices import new_device_id
from piigate.stepup.login import LoginStepUpRequired, LoginTicketRejected

__all__ = ["LOGIN_TICKET_COOKIE", "router"]

router = APIRouter(include_in_schema=False)

_MAX_FIELD = 256


def _next(request: Request, target: str | None) -> str:
    settings = get_services(request).settings
    return safe_return_to(target, public_url=settings.public_url)


@router.get("/")
async def home(request: Request) -> Response:
    viewer = await viewer_of(request)
    if viewer is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/security" if viewer.is_security else "/me", status_code=303)


@router.get("/login")
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    viewer = await viewer_of(request)
    if viewer is not None:
        return RedirectResponse(_next(request, next), status_code=303)
    services = get_services(request)
    return page(
        request,
        "login.html",
        {"next": _next(request, next), "error": None, "oidc": services.settings.identity},
    )


@router.post("/login")
async def sign_in(request: Request) -> Response:
    services = get_services(request)
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    target = _next(request, fields.get("next"))
    username = fields.get("username", "")[:_MAX_FIELD]
    password = fields.get("password", "")[:_MAX_FIELD]
    context = await own_context(services, request)
    if context.device_id is None:  # a device new to piigate: its id from now on
        context = Context(context.ip, context.user_agent, new_device_id())
    try:
        result = await services.login.login(username, Secret(password), context)
    except LoginStepUpRequired as step_up:
        assert step_up.challenge is not None
        ticket = str(step_up.extra["login_ticket"])
        back = "/login/complete?next=" + quote(target, safe="")
        response = RedirectResponse(
            f"/stepup/{step_up.challenge.id}?return_to={quote(back, safe='')}", status_code=303
        )
        response.set_cookie(
            LOGIN_TICKET_COOKIE,
            ticket,
            max_age=max(60, int(step_up.challenge.expires_at.timestamp() - _now(request))),
            httponly=True,
            secure=services.settings.public_url.startswith("https://"),
            samesite="strict",
            path="/",
        )
        return response
    except TooManyRequests as throttled:
        return _refused(request, target, username, throttled.detail, 429, throttled)
    except Forbidden:
        return _refused(request, target, username, "This sign-in is not allowed.", 403)
    except Unauthorized:
        return _refused(request, target, username, "The username or password is wrong.", 401)
    response = RedirectResponse(target, status_code=303)
    await open_browser_session(services, response, result, context)
    return response


def _now(request: Request) -> float:
    return get_services(request).clock.now().timestamp()


def _refused(
    request: Request,
    target: str,
    username: str,
    message: str,
    status: int,
    error: TooManyRequests | None = None,
) -> Response:
    response = page(
        request,
        "login.html",
        {
            "next": target,
            "error": message,
            "username": username,
            "oidc": get_services(request).settings.identity,
        },
        status_code=status,
    )
    if error is not None:
        response.headers.update(error.headers())
    return response


@router.get("/login/complete")
async def complete_sign_in(request: Request, next: str | None = None) -> Response:
    """The stepped-up login's session, once its challenge is approved (the step-up page comes
    back here)."""
    services = get_services(request)
    ticket = request.cookies.get(LOGIN_TICKET_COOKIE)
    target = _next(request, next)
    if not ticket:
        return RedirectResponse("/login", status_code=303)
    context = await own_context(services, request)
    try:
        result, record = await services.login.complete(ticket, context.ip)
    except (LoginTicketRejected, Unauthorized):
        response = _refused(request, target, "", "The sign-in was not approved.", 401)
        response.delete_cookie(LOGIN_TICKET_COOKIE, path="/")
        return response
    response = RedirectResponse(target, status_code=303)
    device = Context(context.ip, context.user_agent, record.device_id)
    await open_browser_session(services, response, result, device, tell=False)
    response.delete_cookie(LOGIN_TICKET_COOKIE, path="/")
    return response


@router.post("/logout")
async def sign_out(request: Request) -> Response:
    services = get_services(request)
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await services.logins.logout(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
