"""Who is calling (CONTRACT §4.1): an API key, an IdP bearer JWT, or the console session cookie."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from piigate.api.services import Services, get_services
from piigate.errors import Forbidden, InsufficientScope, Unauthorized
from piigate.identity import looks_like_api_key
from piigate.model import SessionAuth, Subject

__all__ = [
    "GRANT_COOKIE",
    "GRANT_HEADER",
    "SESSION_COOKIE",
    "Person",
    "Principal",
    "authenticate",
    "presented_grant",
    "require_person",
    "require_principal",
    "require_scope",
]

SESSION_COOKIE = "piigate_session"
# Elevation (CONTRACT §4.1): a grant token in this header, or in this cookie.
GRANT_HEADER = "PIIGate-Grant"
GRANT_COOKIE = "piigate_grant"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "api_key" | "jwt" | "session"
    id: str  # key id for API keys, the subject id otherwise
    subject: Subject
    session: SessionAuth

    @property
    def scopes(self) -> frozenset[str]:
        return self.subject.scopes

    @property
    def roles(self) -> frozenset[str]:
        return self.subject.roles

    def has(self, *, scope: str | None = None, roles: frozenset[str] = frozenset()) -> bool:
        return bool((scope and scope in self.scopes) or (roles & self.roles))


async def authenticate(request: Request, services: Services) -> Principal | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("use Authorization: Bearer <token>")
        if credential.startswith("pgk_"):
            key = (
                await services.api_keys.authenticate(credential)
                if looks_like_api_key(credential)
                else None
            )
            if key is None:
                raise Unauthorized("invalid API key")
            return Principal("api_key", key.id, key.as_subject(), SessionAuth())
        if services.jwt is None:
            raise Unauthorized("bearer tokens are not accepted: no identity provider configured")
        token = await services.jwt.validate(credential, now=services.clock.now())
        return Principal("jwt", token.subject.id, token.subject, token.session)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await services.logins.session_for(cookie)
        if found is not None:
            return Principal("session", found.subject.id, found.subject, found.session)
    return None


async def require_principal(request: Request) -> Principal:
    principal = await authenticate(request, get_services(request))
    if principal is None:
        raise Unauthorized()
    return principal


async def require_person(
    principal: Annotated[Principal, Depends(require_principal)],
) -> Principal:
    """A person (console session or IdP token), never an API key: factors and approvals belong
    to people."""
    if principal.kind == "api_key":
        raise Forbidden("this needs a person: call with your session or token, not an API key")
    return principal


Person = Annotated[Principal, Depends(require_person)]


def presented_grant(request: Request) -> str | None:
    """The grant token the caller presents (``PIIGate-Grant`` header or cookie), if any."""
    return request.headers.get(GRANT_HEADER) or request.cookies.get(GRANT_COOKIE) or None


def require_scope(
    scope: str, *, roles: frozenset[str] = frozenset({"admin"})
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller must carry ``scope`` (API keys, tokens) or one of ``roles``."""

    async def dependency(request: Request) -> Principal:
        principal = await require_principal(request)
        if not principal.has(scope=scope, roles=roles):
            if principal.kind == "session":
                raise Forbidden("your account may not do this")
            raise InsufficientScope([scope])
        return principal

    return dependency
