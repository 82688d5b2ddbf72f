"""Signing in to the console with a local account, and signing out.

``POST /login`` runs the API's login (``stepup/login.py``: the password, throttled as the API
throttles it, then the login decided as ``action: login``). When the policy asks that login to
step up, the login ticket goes into the ``piigate_login_ticket`` cookie (``HttpOnly``,
``SameSite=Strict``, only for the step-up) and the browser is sent to the step-up page, which
completes the login once the challenge is approved (``GET /login/complete``).

A sign-in at the organisation's identity provider (``console/oidc.py``) ends the same way:
:func:`finish_sign_in` takes any login the policy decides to the session, the step-up page or
the sign-in page saying why not.
"""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from piigate.api.auth import LOGIN_TICKET_COOKIE, SESSION_COOKIE
from piigate.api.context import own_context
from piigate.api.routes.sessions import open_browser_session
from piigate.api.services import Services, get_services
from piigate.config import Settings
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.forms import form_fields
from piigate.console.web import page, safe_return_to, viewer_of
from piigate.crypto.secret import Secret
from piigate.errors import Forbidden, TooManyRequests, Unauthorized
from piigate.identity.login import LoginSession
from piigate.model import Context
from piigate.risk.devices import new_device_id
from piigate.stepup.login import LoginStepUpRequired, LoginTicketRejected

__all__ = [
    "LOGIN_TICKET_COOKIE",
    "browser_context",
    "finish_sign_in",
    "oidc_offered",
    "router",
    "sign_in_page",
]

router = APIRouter(include_in_schema=False)

_MAX_FIELD = 256


def _next(request: Request, target: str | None) -> str:
    settings = get_services(request).settings
    return safe_return_to(target, public_url=settings.public_url)


def oidc_offered(settings: Settings) -> bool:
    """The sign-in page offers the organisation's identity provider: a console client is
    configured for it (``identity.console``)."""
    return settings.identity is not None and settings.identity.console is not None


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
        {"next": _next(request, next), "error": None, "oidc": oidc_offered(services.settings)},
    )


@router.post("/login")
async def sign_in(request: Request) -> Response:
    services = get_services(request)
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    target = _next(request, fields.get("next"))
    username = fields.get("username", "")[:_MAX_FIELD]
    password = fields.get("password", "")[:_MAX_FIELD]
    context = await browser_context(services, request)
    attempt = services.login.login(username, Secret(password), context)
    try:
        return await finish_sign_in(request, target, context, attempt, username=username)
    except Unauthorized:
        message = "The username or password is wrong."
        return sign_in_page(request, target, message, 401, username=username)


async def browser_context(services: Services, request: Request) -> Context:
    """The context a sign-in is decided in: the request's, with a new device id for a device
    new to piigate (its id from now on)."""
    context = await own_context(services, request)
    if context.device_id is None:
        context = Context(context.ip, context.user_agent, new_device_id())
    return context


async def finish_sign_in(
    request: Request,
    target: str,
    context: Context,
    attempt: Awaitable[LoginSession],
    *,
    username: str = "",
    from_elsewhere: bool = False,
) -> Response:
    """Where a login the policy decides (``attempt``: a local one, or one at the identity
    provider) takes the browser: the session and ``target``; the step-up page with the login
    ticket; or the sign-in page saying why not. ``Unauthorized`` is the caller's to word.

    ``from_elsewhere``: the browser came from another site (the identity provider's redirect).
    A redirect would keep that request chain cross-site, and browsers would not send the
    ``SameSite=Strict`` login ticket to the step-up page; a page of this origin that moves on
    by itself starts a same-site navigation."""
    services = get_services(request)
    try:
        result = await attempt
    except LoginStepUpRequired as step_up:
        response = _to_step_up(services, target, step_up)
        if from_elsewhere:
            return _same_site_hop(request, response)
        return response
    except TooManyRequests as throttled:
        return sign_in_page(
            request, target, throttled.detail, 429, username=username, error=throttled
        )
    except Forbidden:
        message = "This sign-in is not allowed."
        return sign_in_page(request, target, message, 403, username=username)
    response = RedirectResponse(target, status_code=303)
    await open_browser_session(services, response, result, context)
    return response


def _to_step_up(services: Services, target: str, step_up: LoginStepUpRequired) -> Response:
    """To the step-up page, the login ticket in its cookie; back to ``/login/complete``."""
    assert step_up.challenge is not None
    ticket = str(step_up.extra["login_ticket"])
    back = "/login/complete?next=" + quote(target, safe="")
    response = RedirectResponse(
        f"/stepup/{step_up.challenge.id}?return_to={quote(back, safe='')}", status_code=303
    )
    left = step_up.challenge.expires_at.timestamp() - services.clock.now().timestamp()
    response.set_cookie(
        LOGIN_TICKET_COOKIE,
        ticket,
        max_age=max(60, int(left)),
        httponly=True,
        secure=services.settings.public_url.startswith("https://"),
        samesite="strict",
        path="/",
    )
    return response


def _same_site_hop(request: Request, redirect: Response) -> Response:
    """``redirect`` (its cookies kept) as a page that goes on to its location."""
    location = redirect.headers["location"]
    hop = page(request, "continue.html", {"location": location})
    for name, value in redirect.raw_headers:
        if name == b"set-cookie":
            hop.raw_headers.append((name, value))
    return hop


def sign_in_page(
    request: Request,
    target: str,
    message: str,
    status: int,
    *,
    username: str = "",
    error: TooManyRequests | None = None,
) -> Response:
    """The sign-in page again, saying ``message`` (and ``Retry-After`` for a throttled one)."""
    response = page(
        request,
        "login.html",
        {
            "next": target,
            "error": message,
            "username": username,
            "oidc": oidc_offered(get_services(request).settings),
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
        response = sign_in_page(request, target, "The sign-in was not approved.", 401)
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
