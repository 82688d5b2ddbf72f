"""An OpenID provider on loopback for the console's sign-in tests (imported by name:
``tests/console`` is on ``sys.path``): discovery, the JWKS of ``jwt_support``'s IdP key, and a
token endpoint that checks what RFC 6749 §4.1.3 and RFC 7636 §4.6 ask (the code once, the
redirect URI, the client, the verifier against the challenge). The test plays the person at the
provider's login page with :meth:`FakeIdp.authorize`, which answers the authorization request
piigate redirected to with a code, or with an error."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from api_support import T0
from joserfc.jwk import KeySet, RSAKey
from jwt_support import idp_token

from loopback_support import QuietHandler, ThreadedServer

__all__ = ["CLIENT_ID", "FakeIdp", "Grant"]

CLIENT_ID = "piigate-console"


@dataclass
class Grant:
    """What the provider remembers of a code it gave."""

    id_token: str
    challenge: str
    redirect_uri: str


@dataclass
class FakeIdp:
    key: RSAKey
    client_secret: str | None = None
    discovery: dict[str, Any] = field(default_factory=dict)  # overrides of the document
    discovery_status: int = 200
    codes: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[tuple[dict[str, str], str | None]] = field(default_factory=list)
    discovery_requests: int = 0

    def __post_init__(self) -> None:
        idp = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    idp.discovery_requests += 1
                    self._json(idp.discovery_status, idp.document())
                elif self.path == "/jwks":
                    self._json(200, KeySet([idp.key]).as_dict(private=False))
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(size).decode()).items()}
                idp.token_requests.append((form, self.headers.get("Authorization")))
                status, body = idp.token(form, self.headers.get("Authorization"))
                self._json(status, body)

            def _json(self, status: int, body: object) -> None:
                self.reply(status, "application/json", json.dumps(body).encode())

        self.server = ThreadedServer(Handler)
        self.issuer = self.server.base

    def close(self) -> None:
        self.server.close()

    def document(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            **self.discovery,
        }

    def id_token(self, *, key: RSAKey | None = None, **claims: Any) -> str:
        """An ID token of this provider for the console's client (claims override)."""
        now = int(T0.timestamp())
        base = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300}
        return idp_token(key or self.key, **{**base, **claims})

    def authorize(self, location: str, *, error: str | None = None, **claims: Any) -> str:
        """The provider's answer to the authorization request at ``location``: the path and
        query of the redirect back to piigate, with a code whose ID token carries the
        request's nonce (``claims`` override it and the others), or with ``error``."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert location.startswith(f"{self.issuer}/authorize?")
        assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
        assert query["code_challenge_method"] == "S256"
        back = urlsplit(query["redirect_uri"])
        if error is not None:
            answer = {"error": error, "error_description": "<b>call 555-0100</b>"}
        else:
            code = secrets.token_urlsafe(24)
            token = self.id_token(**{"nonce": query["nonce"], **claims})
            self.codes[code] = Grant(token, query["code_challenge"], query["redirect_uri"])
            answer = {"code": code}
        return f"{back.path}?{urlencode({**answer, 'state': query['state']})}"

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, object]:
        """The token endpoint: the ID token of a code given for this client, or an error."""
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        if not self._client_ok(form, authorization):
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return 400, {"error": "invalid_grant"}
        return 200, {"access_token": "opaque", "token_type": "Bearer", "id_token": grant.id_token}

    def _client_ok(self, form: dict[str, str], authorization: str | None) -> bool:
        if self.client_secret is None:
            return form.get("client_id") == CLIENT_ID and authorization is None
        pair = f"{CLIENT_ID}:{self.client_secret}".encode()
        return authorization == "Basic " + base64.b64encode(pair).decode()
