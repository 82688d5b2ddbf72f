"""A bare HTTP relay: uvicorn and one pooled aiohttp client, no gate at all.

Run by bench/gateway_http.py as a third target beside the gateway and the upstream asked
directly (``python bench/relay.py --port P --upstream URL``): the same server settings as
``piigate gateway http`` (``gateway/http/server.py``: uvicorn on uvloop with httptools, no
access log, no lifespan, start-up objects frozen out of the cyclic GC) and an aiohttp client
set up as the gateway's upstream link is (pooled, no cookie jar, no decompression, none of its
own headers), but nothing in between: no token, no rate limit, no decision, no audit, no
masking, and only the framing headers rewritten. Whatever it reaches is the most a gateway
written this way can reach on this machine.

GET-only (what the bench sends): a request body is not relayed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from typing import Any

import aiohttp
import yarl

from piigate.gateway.http.server import gateway_server

# Not relayed either way: hop-by-hop framing, and what the server sets itself (the lean
# relays of bench/relay_lean.py use the same).
NOT_FORWARDED = frozenset({b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te"})
NOT_RETURNED = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server"}
)


def relay_app(upstream: str) -> Any:
    """The raw ASGI relay to ``upstream`` (``http://host:port``)."""
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        if session is None:  # opened inside the serving loop
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=256, keepalive_timeout=4),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )
        target = scope["raw_path"]
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.lower() not in NOT_FORWARDED
        ]
        url = yarl.URL(upstream + target.decode("latin-1"), encoded=True)
        async with session.request(
            scope["method"], url, headers=headers, allow_redirects=False
        ) as response:
            back = [(k, v) for k, v in response.raw_headers if k.lower() not in NOT_RETURNED]
            length = response.headers.get("content-length")
            if length is not None:
                back.append((b"content-length", length.encode("latin-1")))
            await send({"type": "http.response.start", "status": response.status, "headers": back})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port")
    args = parser.parse_args(argv)
    import uvloop

    server = gateway_server(relay_app(args.upstream.rstrip("/")), "127.0.0.1", args.port)
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
