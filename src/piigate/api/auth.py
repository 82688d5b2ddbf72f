"""Who is calling (CONTRACT §4.1): an API key, an IdP bearer JWT, or the console session cookie.

The caller is resolved here once, into a :class:`~piigate.callers.Caller` that routes hand to the
services. The steps are plain functions (``bearer_credential``, ``api_key_caller``,
``Access.check``) so that the decision route's lean path runs the very same ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from piigate.api.services import Services, get_services
from piigate.callers import Caller, CallerKind
from piigate.errors import Forbidden, InsufficientScope, Unauthorized
from piigate.identity import looks_like_api_key

__all__ = [
    "API_KEY_PREFIX",
    "GRANT_COOKIE",
    "GRANT_HEADER",
    "LOGIN_TICKET_COOKIE",
    "LOGIN_TICKET_HEADER",
    "SESSION_COOKIE",
    "Access",
    "Authenticated",
    "ChallengeCaller",
    "Person",
    "api_key_caller",
    "authenticate",
    "bearer_credential",
    "presented_grant",
    "require_access",
    "require_caller",
    "require_challenge_caller",
    "require_person",
    "require_scope",
]

SESSION_COOKIE = "piigate_session"
# Elevation (CONTRACT §4.1): a grant token in this header, or in this cookie.
GRANT_HEADER = "PIIGate-Grant"
GRANT_COOKIE = "piigate_grant"
# Bearer credentials with this prefix are API keys; any other bearer token is an IdP JWT.
API_KEY_PREFIX = "pgk_"
# A login waiting for its step-up (``stepup/login.py``): good for that one challenge only. The
# console's sign-in keeps it in the cookie (``HttpOnly``, ``SameSite=Strict``) for the step-up
# page; API clients send the header.
LOGIN_TICKET_HEADER = "PIIGate-Login-Ticket"
LOGIN_TICKET_COOKIE = "piigate_login_ticket"


def bearer_credential(authorization: str) -> str:
    """The credential of an ``Authorization: Bearer <credential>`` header (RFC 6750 §2.1)."""
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized("use Authorization: Bearer <token>")
    return credential


async def api_key_caller(services: Services, credential: str) -> Caller:
    """The app whose API key ``credential`` is; ``Unauthorized`` if it is none."""
    key = (
        await services.api_keys.authenticate(credential) if looks_like_api_key(credential) else None
    )
    if key is None:
        raise Unauthorized("invalid API key")
    return Caller.app(key.id, key.as_subject())


async def authenticate(request: Request, services: Services) -> Caller | None:
    header = request.headers.get("authorization")
    if header:
        credential = bearer_credential(header)
        if credential.startswith(API_KEY_PREFIX):
            return await api_key_caller(services, credential)
        if services.jwt is None:
            raise Unauthorized("bearer tokens are not accepted: no identity provider configured")
        token = await services.jwt.validate(credential, now=services.clock.now())
        return Caller.person(token.subject, token.session, kind=CallerKind.JWT)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await services.logins.session_for(cookie)
        if found is not None:
            return Caller.person(found.subject, found.session)
    return None


async def require_caller(request: Request) -> Caller:
    caller = await authenticate(request, get_services(request))
    if caller is None:
        raise Unauthorized()
    return caller


async def require_person(caller: Annotated[Caller, Depends(require_caller)]) -> Caller:
    """A person (console session or IdP token), never an API key: factors and approvals belong
    to people."""
    if caller.is_app:
        raise Forbidden("this needs a person: call with your session or token, not an API key")
    return caller


async def require_challenge_caller(request: Request, challenge_id: str) -> Caller:
    """Who may act on the challenge of the path: any authenticated caller (the routes check
    who may answer it), or a person mid-login presenting the login ticket of that very
    challenge (``PIIGate-Login-Ticket``, or the console's ``piigate_login_ticket`` cookie,
    which ``api.middleware.CrossSiteGuard`` guards as it guards the session cookie)."""
    services = get_services(request)
    caller = await authenticate(request, services)
    if caller is not None:
        return caller
    ticket = request.headers.get(LOGIN_TICKET_HEADER) or request.cookies.get(LOGIN_TICKET_COOKIE)
    if ticket:
        caller = await services.login.ticket_caller(ticket, challenge_id)
        if caller is not None:
            return caller
    raise Unauthorized()


Authenticated = Annotated[Caller, Depends(require_caller)]
Person = Annotated[Caller, Depends(require_person)]
# The challenge routes (``/v1/challenges/{challenge_id}/...``): see require_challenge_caller.
ChallengeCaller = Annotated[Caller, Depends(require_challenge_caller)]


def presented_grant(request: Request) -> str | None:
    """The grant token the caller presents (``PIIGate-Grant`` header or cookie), if any."""
    return request.headers.get(GRANT_HEADER) or request.cookies.get(GRANT_COOKIE) or None


@dataclass(frozen=True, slots=True)
class Access:
    """What a route demands of its caller: ``scope`` (API keys, tokens) or one of ``roles``."""

    scope: str
    roles: frozenset[str] = frozenset({"admin"})

    def check(self, caller: Caller) -> Caller:
        """``caller``, if it may; ``Forbidden`` (a person's session) or ``InsufficientScope``."""
        if not caller.has(scope=self.scope, roles=self.roles):
            if caller.kind is CallerKind.SESSION:
                raise Forbidden("your account may not do this")
            raise InsufficientScope([self.scope])
        return caller


def require_access(access: Access) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency: an authenticated caller that ``access`` admits."""

    async def dependency(request: Request) -> Caller:
        return access.check(await require_caller(request))

    return dependency


def require_scope(
    scope: str, *, roles: frozenset[str] = frozenset({"admin"})
) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency: the caller must carry ``scope`` (API keys, tokens) or one of ``roles``."""
    return require_access(Access(scope, roles))
