"""The demo's identity provider: the company's own sign-in, as a gateway deployment has one.

People call the HTTP and PostgreSQL gateways with a bearer token from their identity provider
(README, "Protecting an HTTP API"); this one issues such tokens for the demo's users, so the
walkthrough can act as a person (whose factors answer step-ups) rather than as an app. It is a
small OAuth 2.0 authorization server over one ES256 key made at start (kept in memory only):

- ``POST /token`` — the resource owner password grant (RFC 6749 §4.3: ``grant_type=password``,
  ``username``, ``password``, form-encoded) → ``{"access_token", "token_type": "Bearer",
  "expires_in"}``; a wrong name or password is ``400 {"error": "invalid_grant"}`` (RFC 6749
  §5.2), the same for both;
- ``GET /jwks.json`` — the public key (RFC 7517), which piigate fetches to verify tokens;
- ``GET /.well-known/openid-configuration`` — the issuer and those two URLs.

A token carries ``sub``, ``roles``, ``acr`` (piigate's ``aal1``: a password), ``amr: ["pwd"]``,
``auth_time``, a session id ``sid`` of its own and an expiry. It serves loopback only: the
demo's listeners are on 127.0.0.1.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from piigate.clock import Clock, SystemClock
from piigate.crypto.secret import Secret

__all__ = ["AAL1_ACR", "DemoIdp", "DemoUser"]

AAL1_ACR: Final = "urn:piigate:aal1"
_ALG: Final = "ES256"
_NO_STORE: Final = {"Cache-Control": "no-store"}  # RFC 6749 §5.1
_MAX_FIELD: Final = 1024


@dataclass(frozen=True, slots=True)
class DemoUser:
    name: str
    password: Secret[str] = field(repr=False)
    roles: tuple[str, ...] = ()


class DemoIdp:
    """Tokens of ``issuer`` for ``audience``, for ``users`` (by name)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        users: Mapping[str, DemoUser],
        *,
        lifetime: int = 3600,
        clock: Clock | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.users = dict(users)
        self.lifetime = lifetime
        self.clock: Clock = clock or SystemClock()
        self._kid = f"demo-{secrets.token_hex(4)}"
        self._key = ECKey.generate_key("P-256", private=True)

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks.json"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    def jwks(self) -> dict[str, object]:
        public = dict(self._key.as_dict(private=False))
        public.update(kid=self._kid, alg=_ALG, use="sig")
        return {"keys": [public]}

    def token_for(self, user: DemoUser) -> str:
        """A signed access token for ``user``, authenticated now with a password."""
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user.name,
            "roles": list(user.roles),
            "acr": AAL1_ACR,
            "amr": ["pwd"],
            "auth_time": now,
            "iat": now,
            "exp": now + self.lifetime,
            "sid": f"idp-{secrets.token_hex(8)}",
            "jti": secrets.token_hex(12),
        }
        header = {"alg": _ALG, "kid": self._kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._key, algorithms=[_ALG])

    def authenticate(self, name: str, password: str) -> DemoUser | None:
        """The user ``name`` when ``password`` is theirs (compared in constant time)."""
        user = self.users.get(name)
        expected = user.password.reveal() if user is not None else secrets.token_urlsafe(16)
        matches = hmac.compare_digest(password.encode(), expected.encode())
        return user if matches and user is not None else None

    def app(self) -> Starlette:
        """The IdP's HTTP endpoints (to mount at the path of ``issuer``)."""

        async def token(request: Request) -> Response:
            form = await request.form(max_files=0, max_fields=8)
            fields = {k: v for k, v in form.items() if isinstance(v, str) and len(v) <= _MAX_FIELD}
            if fields.get("grant_type") != "password":
                return _error("unsupported_grant_type")
            user = self.authenticate(fields.get("username", ""), fields.get("password", ""))
            if user is None:
                return _error("invalid_grant", "the user name or password is wrong")
            body = {
                "access_token": self.token_for(user),
                "token_type": "Bearer",
                "expires_in": self.lifetime,
            }
            return JSONResponse(body, headers=_NO_STORE)

        async def jwks(request: Request) -> Response:
            return JSONResponse(self.jwks(), media_type="application/jwk-set+json")

        async def discovery(request: Request) -> Response:
            document = {
                "issuer": self.issuer,
                "token_endpoint": self.token_url,
                "jwks_uri": self.jwks_url,
                "grant_types_supported": ["password"],
                "id_token_signing_alg_values_supported": [_ALG],
            }
            return JSONResponse(document)

        return Starlette(
            routes=[
                Route("/token", token, methods=["POST"]),
                Route("/jwks.json", jwks, methods=["GET"]),
                Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            ]
        )


def _error(code: str, description: str | None = None) -> Response:
    body = {"error": code} | ({"error_description": description} if description else {})
    return JSONResponse(body, status_code=400, headers=_NO_STORE)
