"""``PiigateMiddleware``: the HTTP gateway's gate in front of an app's own endpoints, in process.

It reads the routes of a ``gateway.http`` section (the reverse proxy's YAML: ``routes``,
``default``, ``masking``, ``headers``, ``rate_limit``; ``upstream`` may be left out when read
with ``load_gateway_config(path, policy, upstream=False)``) and answers as the proxy would, from
the same code (``gateway/http/gate.py``, ``asgi.py``, ``masking.py``):

- a refused request gets the gate's answer (401 step-up with ``WWW-Authenticate`` and the
  challenge, 403, 429, 413, 400, 503) and never reaches the app;
- a route with ``request_fields`` or a ``transaction`` has its body read (up to ``max_body``)
  and decided on, then replayed to the app as it came;
- the app sees the verified subject and level in the configured headers (``PIIGate-Subject``,
  ``PIIGate-Level``), never what the client sent under those names, and not the grant header;
- an allow with ``mask``: the app's answer is read whole (up to ``max_response``), masked and
  sent with ``PIIGate-Masked`` and ``PIIGate-Unlock``. An answer that cannot be masked
  (compressed, not JSON, too large, a stream the app sends as a file) is a 500 problem; a mask
  for a class the route cannot locate in its answer is a 403. Nothing unmasked gets out.

Who calls, the engine and the rate limits are put together as for the proxy
(``gateway/http/assemble.py``, through ``wiring.app_gate``).

WebSocket connections are refused (closed before the handshake completes) on a path a route
matches, and everywhere with ``default: deny``: the gate decides on HTTP requests only.
"""

from __future__ import annotations

from typing import Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from piigate.clock import Clock
from piigate.errors import PiigateError
from piigate.gateway.http.asgi import (
    DEFAULT_MAX_BODY,
    ClientGone,
    raw_headers,
    read_ask,
    request_headers,
    request_target,
    send_answer,
    verified_headers,
)
from piigate.gateway.http.config import Default, HttpGatewayConfig
from piigate.gateway.http.gate import ApiKeyLookup, Decider, Passage
from piigate.gateway.http.masking import (
    NotMaskable,
    answer_mask,
    mask_json_answer,
    masked_answer_headers,
    masked_request_headers,
)
from piigate.gateway.http.routes import Route
from piigate.gateway.http.verdict import Answer, problem_answer, unlock_headers
from piigate.identity import JwtValidator
from piigate.integrations.client import PiigateClient
from piigate.integrations.wiring import app_gate

__all__ = ["AnswerNotMaskable", "PiigateMiddleware"]

log = structlog.get_logger("piigate.integrations")

DEFAULT_MAX_RESPONSE: Final = 16 * 1024 * 1024
# Ways to answer with a file that bypass the body messages the middleware masks.
_FILE_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopy")
_POLICY_VIOLATION: Final = 1008


class AnswerNotMaskable(PiigateError):
    status = 500
    code = "answer_not_maskable"
    title = "The answer cannot be masked"


class PiigateMiddleware:
    """``app.add_middleware(PiigateMiddleware, routes=config, client=client, identity=idp)``.

    ``routes``: the ``gateway.http`` configuration. The engine: ``engine=`` (in this process,
    an ``EngineDecider``) or ``client=`` (a :class:`PiigateClient`). Who calls: ``identity=``
    (a ``JwtValidator``, unless ``routes`` names an ``identity``) and ``api_keys=`` (piigate API
    keys: ``assemble.in_process(services)`` gives a node's). What the gate opened (its IdP's
    key set, rate-limit counters) is closed at the app's lifespan shutdown, or by
    :meth:`aclose`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: HttpGatewayConfig,
        engine: Decider | None = None,
        client: PiigateClient | None = None,
        identity: JwtValidator | None = None,
        api_keys: ApiKeyLookup | None = None,
        clock: Clock | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_response: int = DEFAULT_MAX_RESPONSE,
    ) -> None:
        self.app = app
        self._assembled = app_gate(
            routes, engine=engine, client=client, identity=identity, api_keys=api_keys, clock=clock
        )
        self.gate = self._assembled.gate
        self.max_body = max_body
        self.max_response = max_response

    async def aclose(self) -> None:
        await self._assembled.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self._http(scope, receive, send)
            except ClientGone:
                return
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:  # lifespan: the gate closes with the app
            await self.app(scope, receive, self._closing(send))

    def _closing(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return sending

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        try:
            match = self.gate.route(scope["method"], request_target(scope))
            ask, body = await read_ask(scope, receive, headers, match, self.max_body)
        except PiigateError as exc:  # an ambiguous path, a body too large
            await send_answer(send, problem_answer(exc))
            return
        outcome = await self.gate.check(ask, match)
        if isinstance(outcome, Answer):
            await send_answer(send, outcome)
            return
        route, verdict = outcome.route, outcome.answer_verdict
        try:
            masked = frozenset() if route is None or verdict is None else _mask(route, verdict.mask)
        except PiigateError as exc:
            await send_answer(send, problem_answer(exc))
            return
        inner = self._scope_for_app(scope, outcome, masked)
        if body is not None:
            receive = _replay(body, receive)
        if masked:
            await self._masked(inner, receive, send, outcome, masked)
        else:
            await self.app(inner, receive, _with_headers(send, outcome.headers))

    def _scope_for_app(self, scope: Scope, passage: Passage, masked: frozenset[str]) -> Scope:
        """The request as the app gets it: the verified subject and level in the configured
        headers; for an answer to mask, asked uncompressed and without file shortcuts."""
        drop, verified = verified_headers(self.gate.config.headers, passage)
        text = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        kept = [(k, v) for k, v in text if k not in drop]
        if masked:
            kept = masked_request_headers(kept)
        inner = dict(scope)
        # ASGI header names are lower case.
        inner["headers"] = raw_headers(kept + [(k.lower(), v) for k, v in verified])
        if masked and scope.get("extensions"):
            inner["extensions"] = {
                k: v for k, v in scope["extensions"].items() if k not in _FILE_EXTENSIONS
            }
        return inner

    async def _masked(
        self, scope: Scope, receive: Receive, send: Send, passage: Passage, masked: frozenset[str]
    ) -> None:
        route, verdict = passage.route, passage.answer_verdict
        assert route is not None and verdict is not None
        answer = _Captured(self.max_response)
        await self.app(scope, receive, answer.send)
        try:
            status, headers, raw = answer.whole()
            raw = mask_json_answer(
                raw,
                _header(headers, "content-encoding"),
                route.response_fields,
                masked,
                self.gate.config.masks,
            )
        except NotMaskable as exc:
            log.warning("app_answer_not_maskable", route=route.label, status=answer.status)
            await send_answer(send, problem_answer(AnswerNotMaskable(f"the answer {exc.reason}")))
            return
        out = masked_answer_headers((k, v) for k, v in headers if k != "content-length")
        out.append(("content-length", str(len(raw))))
        out.extend(unlock_headers(verdict, sorted(masked)))
        out.extend(passage.headers)
        await send({"type": "http.response.start", "status": status, "headers": raw_headers(out)})
        await send({"type": "http.response.body", "body": raw})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            match = self.gate.route("GET", request_target(scope))
        except PiigateError:
            match = None
            refused = True
        else:
            refused = match is not None or self.gate.config.default is Default.DENY
        if refused:
            await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
            return
        await self.app(scope, receive, send)


def _mask(route: Route, mask: frozenset[str]) -> frozenset[str]:
    return answer_mask(mask, route.response_fields) if mask else frozenset()


class _Captured:
    """The app's answer, held until it is complete (never more than ``limit`` bytes of it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.parts: list[bytes] = []
        self.size = 0
        self.complete = False
        self.problem: str | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message["headers"]
            ]
        elif kind == "http.response.body" and not self.complete:
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > self.limit:
                self.problem = "is too large to mask"
                self.parts.clear()
            elif self.problem is None:
                self.parts.append(chunk)
            self.complete = not message.get("more_body", False)
        elif kind != "http.response.trailers":  # anything else would bypass the masking
            self.problem = "is not sent as a body that can be masked"

    def whole(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """The status, headers and body; ``NotMaskable`` for an answer that cannot be."""
        if self.problem is None and (self.status is None or not self.complete):
            self.problem = "is incomplete"
        if self.problem is not None:
            raise NotMaskable(self.problem)
        assert self.status is not None
        return self.status, self.headers, b"".join(self.parts)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k == name), None)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives the app the body the gate read, then what the client sends next
    (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send, extra: tuple[tuple[str, str], ...]) -> Send:
    """``send`` that adds the gate's headers (rate limits) to the app's answer."""
    if not extra:
        return send

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *raw_headers(extra)]}
        await send(message)

    return sending
