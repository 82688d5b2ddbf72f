"""ASGI middleware: a hard cap on request bodies, enforced while reading (chunked bodies too)."""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from piigate.errors import PayloadTooLarge

__all__ = ["BodyLimit"]


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(scope, send)
                    return
                # HTTP framing (RFC 9112 §6.2): the server delivers at most the declared
                # length, so a request within the cap needs no counting on the hot path.
                await self.app(scope, receive, send)
                return
        seen = 0
        started = False
        rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer 413 here: the framework may turn any error raised while it reads
                    # the body into a response of its own (FastAPI answers 400), which
                    # tracking_send then drops.
                    if not started and not rejected:
                        rejected = True
                        await self._reject(scope, send)
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, tracking_send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        error = PayloadTooLarge(f"the request body exceeds {self.max_bytes} bytes")
        body = json.dumps(error.problem()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
