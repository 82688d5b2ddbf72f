"""Signing in to the console at the organisation's identity provider: OpenID Connect
authorization code with PKCE (``identity/oidc.py``), offered when ``identity.console``
configures a client.

``GET /login/oidc?next=...`` starts a flow (``identity/oidc_flow.py``: state, nonce, verifier),
seals it into the ``piigate_oidc_flow`` cookie (``HttpOnly``, ``SameSite=Lax`` so that the
provider's redirect back brings it, only for the callback's path, ten minutes) and sends the
browser to the provider. The callback (``identity.console.redirect_path``) takes the cookie
once, refuses an answer whose ``state`` is not the flow's, has the code exchanged and the ID
token checked, then decides the login as a local one is decided (``LoginFlow.login_federated``)
and ends it the same way (``signin.finish_sign_in``): the session, the step-up page with the
login ticket, or the sign-in page saying why not. The network's sign-in back-off applies, and a
refused answer counts against it. No page ever shows a code, a token or the provider's text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from piigate.api.services import Services, get_services
from piigate.config import Settings
from piigate.console.signin import browser_context, finish_sign_in, sign_in_page
from piigate.console.web import safe_return_to, viewer_of
from piigate.errors import TooManyRequests
from piigate.identity.errors import IdpUnavailable
from piigate.identity.federation import FederatedLogin
from piigate.identity.oidc import OidcClient, OidcRefused
from piigate.identity.oidc_flow import FLOW_LIFETIME, SignInFlow
from piigate.model import Context

__all__ = ["FLOW_COOKIE", "START_PATH", "router_for"]

FLOW_COOKIE: Final = "piigate_oidc_flow"
START_PATH: Final = "/login/oidc"
# Longer than any provider's authorization code.
_MAX_CODE: Final = 4096

UNREACHABLE: Final = (
    "Your organisation's sign-in service cannot be reached right now. Try again shortly."
)
STALE: Final = "This sign-in has expired or was started in another browser. Please start again."
UNVERIFIED: Final = "Your organisation's sign-in could not be verified. Please start again."
NOT_SET_UP: Final = "Signing in with your organisation is not set up."
# What the provider's ``error`` (RFC 6749 §4.1.2.1, Core §3.1.2.6) means for the person; its
# ``error_description`` is never shown (anyone can put text in a link).
_IDP_ERRORS: Final = {
    "access_denied": ("The sign-in was cancelled or refused at your organisation.", 401),
    "temporarily_unavailable": (UNREACHABLE, 503),
    "server_error": (UNREACHABLE, 503),
}
_IDP_OTHER: Final = ("Your organisation's sign-in did not complete. Please start again.", 400)


def router_for(settings: Settings) -> APIRouter:
    """The sign-in's two routes when the console has a client at the identity provider."""
    routes = APIRouter(include_in_schema=False)
    if settings.identity is not None and settings.identity.console is not None:
        routes.add_api_route(START_PATH, start, methods=["GET"])
        routes.add_api_route(settings.identity.console.redirect_path, callback, methods=["GET"])
    return routes


async def start(request: Request, next: str | None = None) -> Response:
    """To the identity provider, the flow sealed in its cookie."""
    services = get_services(request)
    target = safe_return_to(next, public_url=services.settings.public_url)
    if await viewer_of(request) is not None:
        return RedirectResponse(target, status_code=303)
    client = services.oidc
    if client is None:
        return sign_in_page(request, target, NOT_SET_UP, 404)
    flow = SignInFlow.start(target, now=services.clock.now())
    try:
        await services.logins.refuse_while_backed_off(
            request.client.host if request.client else None
        )
        location = await client.authorization_url(flow)
    except TooManyRequests as throttled:
        return sign_in_page(request, target, throttled.detail, 429, error=throttled)
    except IdpUnavailable:
        return sign_in_page(request, target, UNREACHABLE, 503)
    response = RedirectResponse(location, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        flow.seal(services.keyring),
        max_age=int(FLOW_LIFETIME.total_seconds()),
        httponly=True,
        secure=_secure(services),
        samesite="lax",
        path=client.settings.redirect_path,
    )
    return response


async def callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    """The provider's answer: the login decided, or the sign-in page saying why not. The
    flow's cookie is spent either way."""
    services = get_services(request)
    client = services.oidc
    if client is None:
        return sign_in_page(request, "/", NOT_SET_UP, 404)
    response = await _answer(request, services, client, code=code, state=state, error=error)
    response.delete_cookie(
        FLOW_COOKIE,
        path=client.settings.redirect_path,
        secure=_secure(services),
        httponly=True,
        samesite="lax",
    )
    return response


async def _answer(
    request: Request,
    services: Services,
    client: OidcClient,
    *,
    code: str | None,
    state: str | None,
    error: str | None,
) -> Response:
    now = services.clock.now()
    flow = await SignInFlow.unseal(request.cookies.get(FLOW_COOKIE, ""), services.keyring, now=now)
    public_url = services.settings.public_url
    target = safe_return_to(flow.return_to if flow else None, public_url=public_url)
    if error is not None:
        message, status = _IDP_ERRORS.get(error, _IDP_OTHER)
        return sign_in_page(request, target, message, status)
    context = await browser_context(services, request)
    try:
        await services.logins.refuse_while_backed_off(context.ip)
        login = await _signed_in(client, flow, code=code, state=state, now=now)
    except TooManyRequests as throttled:
        return sign_in_page(request, target, throttled.detail, 429, error=throttled)
    except IdpUnavailable:
        return sign_in_page(request, target, UNREACHABLE, 503)
    except OidcRefused as refused:
        return await _refused(request, services, context, target, refused)
    attempt = services.login.login_federated(login, context)
    return await finish_sign_in(request, target, context, attempt, from_elsewhere=True)


async def _signed_in(
    client: OidcClient,
    flow: SignInFlow | None,
    *,
    code: str | None,
    state: str | None,
    now: datetime,
) -> FederatedLogin:
    """Who the provider says signed in, when the answer is this browser's flow's (its cookie,
    its ``state``); :class:`OidcRefused` otherwise."""
    if flow is None:
        raise OidcRefused("no_flow")
    if not state or not flow.answers(state):
        raise OidcRefused("state_mismatch")
    if not code or len(code) > _MAX_CODE:
        raise OidcRefused("no_code")
    return await client.sign_in(code=code, flow=flow, now=now)


async def _refused(
    request: Request, services: Services, context: Context, target: str, refused: OidcRefused
) -> Response:
    """A refused answer: counted against the network, audited (its reason), and the sign-in
    page."""
    await services.logins.count_network_failure(context.ip, method="oidc", reason=refused.reason)
    if refused.reason in ("no_flow", "state_mismatch"):
        return sign_in_page(request, target, STALE, 400)
    return sign_in_page(request, target, UNVERIFIED, 401)


def _secure(services: Services) -> bool:
    return services.settings.public_url.startswith("https://")
