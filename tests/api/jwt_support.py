"""An identity provider's bearer JWTs for the tests that run a node (imported by name, like
api_support): its signing key and JWK Set served on loopback (the ``idp_key`` and ``jwks_server``
fixtures: import them into a conftest.py), and tokens it signs (``idp_token``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from api_support import T0
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

__all__ = ["AUDIENCE", "ISSUER", "JwksServer", "idp_key", "idp_token", "jwks_server"]

ISSUER = "https://idp.example"
AUDIENCE = "piigate-api"


class JwksServer:
    """Serves a JWK Set on loopback from a thread."""

    def __init__(self, keys: KeySet) -> None:
        document = json.dumps(keys.as_dict(private=False)).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


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
