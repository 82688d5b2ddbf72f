"""An identity provider's bearer JWTs for the tests that run a node (imported by name, like
api_support): its signing key and JWK Set served on loopback (the ``idp_key`` and ``jwks_server``
fixtures: import them into a conftest.py), and tokens it signs (``idp_token``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from api_support import T0
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from loopback_support import QuietHandler, ThreadedServer

__all__ = ["AUDIENCE", "ISSUER", "JwksServer", "idp_key", "idp_token", "jwks_server"]

ISSUER = "https://idp.example"
AUDIENCE = "piigate-api"


class JwksServer(ThreadedServer):
    """Serves a JWK Set on loopback (at :attr:`url`) from a thread, until :meth:`close`."""

    def __init__(self, keys: KeySet) -> None:
        document = json.dumps(keys.as_dict(private=False)).encode()

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self.reply(200, "application/jwk-set+json", document)

        super().__init__(Handler)
        self.url = f"{self.base}/jwks"


def idp_token(key: RSAKey, **overrides: Any) -> str:
    now = int(T0.timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now - 60,
        "exp": now + 600,
        "acr": "urn:piigate:aal2",
        "amr": ["pwd", "otp"],
        "auth_time": now - 60,
        "sid": "sess-1",
        "scope": "openid decisions",
    }
    claims.update(overrides)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    """An identity provider's signing key (``idp_token`` signs with it)."""
    return RSAKey.generate_key(2048, parameters={"kid": "idp-1"})


@pytest.fixture
def jwks_server(idp_key: RSAKey) -> Iterator[JwksServer]:
    """``idp_key``'s JWK Set, served on loopback."""
    server = JwksServer(KeySet([idp_key]))
    try:
        yield server
    finally:
        server.close()
