"""A test-only upstream for the HTTP gateway's end-to-end tests: the sample customer API
(``piigate.demo.customers``) with endpoints beside it that misbehave or tell what reached them.

``python tests/e2e/misbehaving_upstream.py --port P`` serves, besides the sample API:

- ``GET /slow`` → waits ``--slow`` seconds (default 30), then a customer-shaped JSON;
- ``GET /not-json/{id}`` → an HTML page holding a customer's SSN (a masked route must never
  pass it on);
- ``/echo/{rest}`` (any method) → 200 with what arrived: the method, the target, every header
  as received (``[name, value]`` pairs) and the body's length and SHA-256; the answer carries
  hop-by-hop headers of its own (``Connection: x-upstream-hop``, ``X-Upstream-Hop``,
  ``Keep-Alive``) that the gateway must not pass back;
- ``GET /_seen`` → every request received so far (method and target), and the targets of the
  ``/echo`` requests whose body arrived whole (``finished``), for the tests to check what the
  gateway let through; the tests call it directly, never through the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from piigate.demo.customers import create_customers_app, sample_customers

__all__ = ["create_upstream_app"]


class _Seen:
    """Records each request's method and target before the app sees it."""

    def __init__(self, app: ASGIApp, seen: list[dict[str, str]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/_seen":
            target = scope["raw_path"].decode("latin-1")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            self.seen.append({"method": scope["method"], "target": target})
        await self.app(scope, receive, send)


def create_upstream_app(slow_seconds: float = 30.0) -> ASGIApp:
    seen: list[dict[str, str]] = []
    finished: list[str] = []
    customer = sample_customers()["1"]

    async def slow(request: Request) -> Response:
        await asyncio.sleep(slow_seconds)
        return JSONResponse(customer)

    async def not_json(request: Request) -> Response:
        return HTMLResponse(f"<html><body>SSN {customer['ssn']}</body></html>")

    async def echo(request: Request) -> Response:
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
        except ClientDisconnect:  # the gateway broke the request off (a refused upload)
            return Response(status_code=400)
        finished.append(request.scope["raw_path"].decode("latin-1"))
        body: dict[str, Any] = {
            "method": request.method,
            "target": request.scope["raw_path"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body_bytes": size,
            "body_sha256": digest.hexdigest(),
        }
        hops = {"connection": "x-upstream-hop", "x-upstream-hop": "1", "keep-alive": "timeout=5"}
        return JSONResponse(body, headers=hops)

    async def seen_so_far(request: Request) -> Response:
        return JSONResponse({"requests": seen, "finished": finished})

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(
        routes=[
            Route("/slow", slow, methods=["GET"]),
            Route("/not-json/{id}", not_json, methods=["GET"]),
            Route("/echo/{rest:path}", echo, methods=methods),
            Route("/_seen", seen_so_far, methods=["GET"]),
            Mount("/", app=create_customers_app()),
        ]
    )
    return _Seen(app, seen)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slow", type=float, default=30.0)
    args = parser.parse_args()
    uvicorn.run(
        create_upstream_app(args.slow), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
