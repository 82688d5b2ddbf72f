"""Local login (CONTRACT §4.1): ``POST /v1/login`` sets the session cookie; ``/v1/logout``;
``POST /v1/db-credentials``: a session of its own for the PostgreSQL gateway (``piigate login``).

A login is decided as ``action: login`` (``stepup/login.py``). When the policy asks for a
step-up, the answer is a 401 with the challenge and a login ticket; once the challenge is
approved, ``POST /v1/login/complete`` with the ticket opens the session. Every login that
opens a session also sets the device cookie and tells the risk engine (``api/context.py``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from piigate.api.auth import SESSION_COOKIE, Person
from piigate.api.context import own_context, tell_verified
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import LoginIn
from piigate.api.services import Services, get_services
from piigate.crypto.secret import Secret
from piigate.decision_request import In
from piigate.errors import Forbidden
from piigate.gateway.postgres.scram import ScramVerifier
from piigate.identity.login import (
    DB_CREDENTIAL_PREFIX,
    DB_USER_PREFIX,
    LoginSession,
    session_token_hash,
)
from piigate.identity.tickets import MAX_TICKET_LENGTH
from piigate.model import Context
from piigate.risk.devices import new_device_id
from piigate.stepup.login import COMPLETE_PATH

router = APIRouter(tags=["sessions"], route_class=JsonRoute)

LOGIN_PATH = "/v1/login"
DB_CREDENTIALS_PATH = "/v1/db-credentials"
LOGOUT_PATH = "/v1/logout"
# Checked for cross-site use even without a session cookie (api.middleware.CrossSiteGuard).
ENTRY_PATHS = (LOGIN_PATH, COMPLETE_PATH, LOGOUT_PATH)


class LoginCompleteIn(In):
    ticket: Annotated[str, Field(min_length=1, max_length=MAX_TICKET_LENGTH)]


@router.post(
    LOGIN_PATH,
    summary="Log in with a local username and password",
    responses={
        401: {
            "description": "Wrong credentials, or a step-up first: the challenge and a login "
            "ticket (problem `insufficient_user_authentication`)"
        },
        403: {"description": "The policy denies this login"},
    },
)
async def login(body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
    """The session cookie (and the device cookie). When the policy asks this login to step up,
    a 401 problem carries the ``challenge``, what it ``required``s and a ``login_ticket``:
    answer the challenge with ``PIIGate-Login-Ticket: <ticket>``, then ``POST
    /v1/login/complete`` with ``{"ticket"}``."""
    services = get_services(request)
    context = await own_context(services, request)
    if context.device_id is None:  # a device new to piigate: its id from now on
        context = Context(context.ip, context.user_agent, new_device_id())
    result = await services.login.login(body.username, Secret(body.password), context)
    return await open_browser_session(services, response, result, context)


@router.post(COMPLETE_PATH, summary="Complete a login whose step-up is approved")
async def complete_login(
    body: LoginCompleteIn, request: Request, response: Response
) -> dict[str, Any]:
    """The session cookie, once the challenge of the login ticket is approved; 409 while it is
    still pending (try again), 401 when the ticket is not good (any reason)."""
    services = get_services(request)
    context = await own_context(services, request)
    result, ticket = await services.login.complete(body.ticket, context.ip)
    # The device the login came from (bound to the ticket), which its step-up verified.
    device = Context(context.ip, context.user_agent, ticket.device_id)
    return await open_browser_session(services, response, result, device, tell=False)


async def open_browser_session(
    services: Services,
    response: Response,
    result: LoginSession,
    context: Context,
    *,
    tell: bool = True,
) -> dict[str, Any]:
    """The cookies of an opened session and its description; the risk engine told of the
    login (``tell``: a completed login's step-up told it already). The console's sign-in
    opens its sessions here too."""
    assert result.token is not None
    secure = services.settings.public_url.startswith("https://")
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        max_age=services.settings.session_ttl,
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    services.devices.set_cookie(response, context.device_id, secure=secure)
    if tell:
        await tell_verified(services, result.subject.id, context)
    return {
        "subject": result.subject.id,
        "roles": sorted(result.subject.roles),
        "level": result.session.level,
        "session_id": result.session.id,
    }


@router.post(
    DB_CREDENTIALS_PATH,
    status_code=201,
    summary="A password for the PostgreSQL gateway: a session of its own, for the caller",
)
async def db_credential(request: Request, response: Response, user: Person) -> dict[str, Any]:
    """A short-lived credential (the session lifetime) for ``psql`` and other database
    clients through the PostgreSQL gateway, for the logged-in local user: a new session of
    theirs at the password's level (their step-ups count only in the session that made them).
    Shown once; ``POST /v1/logout`` with it as the session ends it like any session."""
    services = get_services(request)
    record = await services.store.get_user(user.id)
    if record is None or record.disabled:
        raise Forbidden("database credentials are for local users")
    context = await own_context(services, request)
    opened = await services.logins.open_session(record, context.ip)
    assert opened.token is not None
    password = DB_CREDENTIAL_PREFIX + opened.token
    token_hash = session_token_hash(opened.token)
    # The user name dbc_<session id> names its SCRAM-SHA-256 verifier at the gateway.
    verifier = await asyncio.to_thread(
        ScramVerifier.from_password, password, salt=secrets.token_bytes(16)
    )
    await services.store.set_session_scram(token_hash, str(verifier))
    response.headers["Cache-Control"] = "no-store"
    expires = services.clock.now().timestamp() + services.settings.session_ttl
    return {
        "user": DB_USER_PREFIX + token_hash[:16],
        "password": password,
        "subject": user.id,
        "expires_at": int(expires),
    }


@router.post(LOGOUT_PATH, status_code=204, summary="End the console session")
async def logout(request: Request, response: Response) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await get_services(request).logins.logout(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
