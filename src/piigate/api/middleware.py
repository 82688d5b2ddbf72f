"""ASGI middleware: a hard cap on request bodies, enforced while reading (chunked bodies too),
and the refusal of cross-site requests that a browser's session cookie would authenticate."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from piigate.api.problems import instance_of
from piigate.errors import Forbidden, PayloadTooLarge, PiigateError
from piigate.origins import web_origin

__all__ = ["BodyLimit", "CrossSiteGuard", "CrossSiteRequest", "send_problem"]


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
                    await send_problem(scope, send, self._too_large())
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
                        await send_problem(scope, send, self._too_large())
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

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body exceeds {self.max_bytes} bytes")


async def send_problem(scope: Scope, send: Send, error: PiigateError) -> None:
    """Answer ``error`` as problem+json from outside the app (no exception handler runs here)."""
    body = json.dumps(error.problem(instance_of(scope))).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers.extend(
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in error.headers().items()
    )
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"
    title = "Cross-site request refused"


# RFC 9110 §9.2.1: the methods that change nothing; every other one may.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CrossSiteGuard:
    """Refuse a state-changing request that a browser may have sent for another site.

    A browser attaches the session cookie to requests other pages make: a form posted from
    another site, or any request from a same-site page on another port or subdomain, which
    ``SameSite`` does not stop. So a cookie alone does not show that the user asked. A request
    with one of ``ambient_cookies`` (the session cookie, and the login ticket cookie that
    answers a login's step-up) must name one of ``origins`` (the service's public origin and
    any configured others) in ``Origin`` (or, when a browser leaves it out, in ``Referer``);
    with neither it is refused too. Requests that authenticate with an ``Authorization``
    header carry no ambient authority (a page cannot add one without a CORS preflight, which
    piigate never grants) and are not checked. ``entry_paths`` (login, logout) are checked
    whenever they carry an origin, cookie or not, so that no other site can log a browser in
    to an account of its choosing. Paths under ``cookieless`` (forward-auth, which is handed
    the cookies of requests meant for another API) never read the session cookie, so they are
    not checked.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: Iterable[str],
        ambient_cookies: Iterable[str],
        entry_paths: Iterable[str] = (),
        cookieless: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.ambient_cookies = frozenset(ambient_cookies)
        self.entry_paths = frozenset(entry_paths)
        self.cookieless = cookieless

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in _SAFE_METHODS
            and not scope["path"].startswith(self.cookieless)
        ):
            refusal = self._refusal(scope)
            if refusal is not None:
                await send_problem(scope, send, CrossSiteRequest(refusal))
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        """Why the request is refused; None when it may go on."""
        origin = referer = cookies = None
        for name, value in scope["headers"]:
            if name == b"authorization" and value.strip():
                return None  # the header authenticates (``api.auth.authenticate``), not the cookie
            if name == b"origin" and origin is None:
                origin = value.decode("latin-1")
            elif name == b"referer" and referer is None:
                referer = value.decode("latin-1")
            elif name == b"cookie":
                cookies = (
                    f"{cookies}; {value.decode('latin-1')}" if cookies else value.decode("latin-1")
                )
        with_cookie = cookies is not None and not self.ambient_cookies.isdisjoint(
            cookie_parser(cookies)
        )
        entry = scope["path"] in self.entry_paths
        if not with_cookie and not entry:
            return None
        claimed = origin if origin is not None else referer
        if claimed is None:
            if not with_cookie:
                return None  # a login from a script: no browser, so no other site behind it
            return "a request with piigate's cookies must carry an Origin or Referer header"
        try:
            allowed = web_origin(claimed) in self.origins
        except ValueError:
            allowed = False
        if allowed:
            return None
        return "the request comes from another origin; use this service's own pages or an API key"
