"""CSRF tokens for the console's forms: the signed double-submit pattern.

The browser holds a random nonce in the ``piigate_csrf`` cookie (``HttpOnly``,
``SameSite=Strict``); every form carries ``HMAC(key, nonce | session)`` under the key the
deployment derives for this purpose (``Keyring.derived_key``), with the key's id. Another site
can neither read the cookie nor compute the MAC, and a token made for one session is refused in
another (a sign-in changes the session, so forms rendered before it are stale). The check runs
before a form's fields are looked at; the API's cross-site guard (``Origin``) applies as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from piigate.api.auth import SESSION_COOKIE
from piigate.api.services import Services
from piigate.errors import Forbidden

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CsrfRejected", "check_csrf", "csrf_token", "keep_nonce"]

CSRF_COOKIE: Final = "piigate_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
_PURPOSE: Final = b"console-csrf"
_NONCE_STATE: Final = "piigate_csrf_nonce"


class CsrfRejected(Forbidden):
    code = "csrf_rejected"
    title = "The form has expired or did not come from this console"


def _nonce(request: Request) -> str:
    nonce = request.cookies.get(CSRF_COOKIE)
    if nonce and 16 <= len(nonce) <= 64:
        return nonce
    fresh: str | None = getattr(request.state, _NONCE_STATE, None)
    if fresh is None:
        fresh = secrets.token_urlsafe(24)
        setattr(request.state, _NONCE_STATE, fresh)
    return fresh


def _mac(key: bytes, nonce: str, request: Request) -> str:
    session = request.cookies.get(SESSION_COOKIE, "")
    bound = hashlib.sha256(session.encode()).hexdigest() if session else ""
    return hmac.new(key, f"{nonce}|{bound}".encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request, services: Services) -> str:
    """The token this request's forms carry (a nonce cookie is set by :func:`keep_nonce`)."""
    derived = services.keyring.derived_key(_PURPOSE)
    assert derived is not None, "the keyring always holds its current data key"
    kid, key = derived
    return f"{kid}.{_mac(key, _nonce(request), request)}"


def keep_nonce(request: Request, response: Response, *, secure: bool) -> None:
    """Set the nonce cookie when this request made a new one."""
    fresh: str | None = getattr(request.state, _NONCE_STATE, None)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE, fresh, httponly=True, secure=secure, samesite="strict", path="/"
        )


async def check_csrf(request: Request, services: Services, token: object) -> None:
    """Raise :class:`CsrfRejected` unless ``token`` (a form field or the ``X-CSRF-Token``
    header) is this browser's token for this session."""
    if not isinstance(token, str) or not token:
        token = request.headers.get(CSRF_HEADER, "")
    nonce = request.cookies.get(CSRF_COOKIE)
    kid, _, mac = str(token).partition(".")
    if not nonce or not kid or not mac:
        raise CsrfRejected("the form carries no valid token; reload the page and try again")
    derived = services.keyring.derived_key(_PURPOSE, kid)
    if derived is None and await services.keyring.learn(kid):
        derived = services.keyring.derived_key(_PURPOSE, kid)
    if derived is None or not hmac.compare_digest(mac, _mac(derived[1], nonce, request)):
        raise CsrfRejected("the form carries no valid token; reload the page and try again")
