"""Parts of bench/gateway_http.py: the identity provider it plays, and the gateway run under
cProfile for ``--profile`` (this file run as ``python bench/_gateway_http_parts.py CONFIG FILE``).
"""

from __future__ import annotations

import cProfile
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

HOST = "127.0.0.1"
AUDIENCE = "customers-api"


class Issuer:
    """The part of an OpenID provider the gateway sees: a JWKS URL, and tokens signed by it."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "bench", "alg": "ES256"})
        jwks = json.dumps({"keys": [self.key.as_dict(private=False)]}).encode()

        class Jwks(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((HOST, 0), Jwks)
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, subject: str, acr: str = "urn:piigate:aal1") -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + 3600,
            "auth_time": now,
            "acr": acr,
            "amr": ["pwd"],
            "scope": "customers:read",
        }
        header = {"alg": "ES256", "kid": "bench", "typ": "at+jwt"}
        return jwt.encode(header, claims, self.key)

    def close(self) -> None:
        self.server.shutdown()


def serve(config: str, profile: str) -> None:
    """``piigate gateway http --config CONFIG`` in this process, cProfile running from the first
    SIGUSR1 (so start-up is not in it); the stats written when the gateway stops on SIGTERM."""
    from piigate.cli import main as cli

    sys.argv = ["piigate", "gateway", "http", "--config", config]
    profiler = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
    # uvicorn re-raises the SIGTERM it stopped on once it is done: exit through ``finally``.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        cli()
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process ``pid`` alone (all its threads, no children)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
