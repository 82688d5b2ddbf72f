"""The reverse proxy (``piigate gateway http``): an ASGI application in front of the upstream API.

Per request: the framing is checked (a request with both ``Content-Length`` and
``Transfer-Encoding``, or two different lengths, is refused: a request smuggled past one parser
must not reach another); the route is matched; a route that decides on the request body
(``request_fields``, ``transaction``) has its body read, up to ``max_body`` bytes (413 beyond),
and parsed exactly (``jsontext.loads_exact``: numbers as written, duplicate keys refused, not
JSON → every class of ``request_fields`` counts as touched); the :class:`Gate` decides. A
refused request never reaches the upstream.

A request that goes on is sent upstream with its headers rewritten (``upstream.py``) and the
verified subject and level in the configured headers. Its answer streams back as it comes,
unless the verdict masks PII that the route's ``response_fields`` locate: that answer is read
whole (up to ``max_response`` bytes), parsed, masked (``masking.mask_document``) and sent with
``PIIGate-Masked`` and ``PIIGate-Unlock``. Fail closed: an answer that cannot be masked (not
JSON, compressed, too large) is a 502 problem, never passed through; a mask for a class the
route cannot locate in its answer is a 403.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import structlog

from piigate.errors import BadRequest, Forbidden, PayloadTooLarge, PiigateError
from piigate.gateway.http.gate import Ask, Gate, Passage
from piigate.gateway.http.masking import mask_document
from piigate.gateway.http.routes import Body, Route, RouteMatch
from piigate.gateway.http.upstream import (
    Upstream,
    UpstreamAnswer,
    UpstreamUnavailable,
    downstream_headers,
    upstream_headers,
)
from piigate.gateway.http.verdict import Answer, Verdict, problem_answer, unlock_headers
from piigate.jsontext import dumps_exact, loads_exact

__all__ = ["HttpGateway", "framing_problem"]

log = structlog.get_logger("piigate.gateway")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Any
Send = Any

DEFAULT_MAX_BODY: Final = 1024 * 1024
DEFAULT_MAX_RESPONSE: Final = 16 * 1024 * 1024


class _ClientGone(Exception):
    pass


def framing_problem(headers: Sequence[tuple[str, str]]) -> str | None:
    """Why the request's framing is refused (RFC 9112 §6.1, §6.3), or None."""
    lengths = {v.strip() for k, v in headers if k == "content-length"}
    encodings = [v for k, v in headers if k == "transfer-encoding"]
    if lengths and encodings:
        return "Content-Length and Transfer-Encoding together"
    if len(lengths) > 1:
        return "conflicting Content-Length headers"
    if lengths and not next(iter(lengths)).isdigit():
        return "an invalid Content-Length"
    if encodings and ",".join(encodings).strip().lower() != "chunked":
        return "a Transfer-Encoding other than chunked"
    return None


class HttpGateway:
    def __init__(
        self,
        gate: Gate,
        upstream: Upstream,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        max_response: int = DEFAULT_MAX_RESPONSE,
    ) -> None:
        self.gate = gate
        self.upstream = upstream
        self.max_body = max_body
        self.max_response = max_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets are not proxied
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._handle(scope, receive, tracked, headers)
        except _ClientGone:
            return
        except PiigateError as exc:
            if started:  # the answer broke off mid-body: the server drops the connection
                raise
            await _send_answer(send, problem_answer(exc))

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[str, str]]
    ) -> None:
        problem = framing_problem(headers)
        if problem is not None:
            raise BadRequest(f"the request has {problem}")
        method: str = scope["method"]
        target = _target(scope)
        match = self.gate.route(method, target)
        client = scope.get("client")
        ask = Ask(method, target, headers, client_ip=client[0] if client else None)
        body: bytes | None = None
        if match is not None and match.route.reads_body:
            body = await self._read_body(receive, headers)
            ask = Ask(
                method,
                target,
                headers,
                client_ip=ask.client_ip,
                body=_parsed(body),
                raw_body=body,
            )
        outcome = await self.gate.check(ask, match)
        if isinstance(outcome, Answer):
            await _send_answer(send, outcome)
            return
        unmaskable = _unmaskable(match, outcome.verdict)
        if unmaskable:
            names = ", ".join(sorted(unmaskable))
            raise Forbidden(f"this route's answer cannot be masked for: {names}")
        await self._forward(scope, receive, send, ask, outcome, body)

    async def _read_body(self, receive: Receive, headers: list[tuple[str, str]]) -> bytes:
        declared = next((v for k, v in headers if k == "content-length"), None)
        if declared is not None and int(declared) > self.max_body:
            raise self._too_large()
        parts: list[bytes] = []
        size = 0
        async for chunk in _request_chunks(receive):
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            parts.append(chunk)
        return b"".join(parts)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body exceeds {self.max_body} bytes")

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ask: Ask,
        passage: Passage,
        body: bytes | None,
    ) -> None:
        config = self.gate.config
        names = config.headers
        drop = frozenset({"piigate-grant", names.subject.lower(), names.level.lower()})
        out = upstream_headers(
            ask.headers, drop=drop, client_ip=ask.client_ip, scheme=scope["scheme"]
        )
        if passage.caller is not None:
            out.append((names.subject, passage.caller.subject.id))
        verdict = passage.verdict
        if verdict is not None and verdict.level is not None:
            out.append((names.level, verdict.level))
        masked = _masked(passage.route, verdict)
        if masked:  # the answer is read and masked: it must come uncompressed
            out = [(k, v) for k, v in out if k != "accept-encoding"]
            out.append(("accept-encoding", "identity"))
        content: bytes | AsyncIterator[bytes] | None = body
        if body is None and _has_body(ask.headers):
            content = _request_chunks(receive)
        answer = await self.upstream.send(ask.method, ask.target, out, content)
        try:
            if masked and verdict is not None and passage.route is not None:
                await self._send_masked(send, answer, passage, masked)
            else:
                await _stream_back(send, answer, passage.headers)
        finally:
            await answer.aclose()

    async def _send_masked(
        self, send: Send, answer: UpstreamAnswer, passage: Passage, masked: frozenset[str]
    ) -> None:
        route, verdict = passage.route, passage.verdict
        assert route is not None and verdict is not None
        raw = await answer.read(self.max_response)
        if raw is None:
            raise UpstreamUnavailable("the upstream's answer is too large to mask")
        encoding = (answer.header("content-encoding") or "identity").strip().lower()
        if raw and encoding != "identity":
            raise UpstreamUnavailable("the upstream's answer is compressed and cannot be masked")
        if raw:
            try:
                doc = loads_exact(raw)
            except ValueError:
                log.warning("upstream_not_json", route=route.label, status=answer.status)
                raise UpstreamUnavailable(
                    "the upstream's answer is not the JSON this route promises"
                ) from None
            rules = self.gate.config.masks
            try:
                raw = dumps_exact(mask_document(doc, route.response_fields, masked, rules)[0])
            except TypeError:  # a lone surrogate: not JSON that can be written back
                raise UpstreamUnavailable("the upstream's answer cannot be masked") from None
        headers = downstream_headers(answer.headers)
        headers.append(("content-length", str(len(raw))))
        headers.extend(unlock_headers(verdict, sorted(masked)))
        headers.extend(passage.headers)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": _raw(headers)}
        )
        await send({"type": "http.response.body", "body": raw})


def _masked(route: Route | None, verdict: Verdict | None) -> frozenset[str]:
    """The classes to hide in the answer (those of the verdict's mask its route locates)."""
    if route is None or verdict is None or not verdict.mask:
        return frozenset()
    return verdict.mask & route.response_fields.labels


def _unmaskable(match: RouteMatch | None, verdict: Verdict | None) -> frozenset[str]:
    """Classes the verdict masks that the route cannot locate in its answer."""
    if match is None or verdict is None:
        return frozenset()
    return verdict.mask - match.route.response_fields.labels


def _target(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    target = raw.decode("latin-1")
    query = scope.get("query_string") or b""
    return f"{target}?{query.decode('latin-1')}" if query else target


def _parsed(body: bytes) -> object:
    if not body:
        return Body.ABSENT
    try:
        return loads_exact(body)
    except ValueError:  # not JSON, duplicate keys: every class of request_fields counts
        return Body.UNREADABLE


def _has_body(headers: Sequence[tuple[str, str]]) -> bool:
    for key, value in headers:
        if key == "transfer-encoding" or (key == "content-length" and value.strip() != "0"):
            return True
    return False


async def _request_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _stream_back(
    send: Send, answer: UpstreamAnswer, extra: Sequence[tuple[str, str]]
) -> None:
    headers = downstream_headers(answer.headers)
    length = answer.header("content-length")
    if length is not None:
        headers.append(("content-length", length))
    headers.extend(extra)
    chunks = answer.chunks()
    first = b""
    # The first chunk before the status line: an upstream failing at once is a problem.
    with contextlib.suppress(StopAsyncIteration):
        first = await anext(chunks)
    await send({"type": "http.response.start", "status": answer.status, "headers": _raw(headers)})
    await send({"type": "http.response.body", "body": first, "more_body": True})
    async for chunk in chunks:  # a failure from here on breaks the connection off
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _raw(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _send_answer(send: Send, answer: Answer) -> None:
    headers = [*answer.headers, ("content-length", str(len(answer.body)))]
    await send({"type": "http.response.start", "status": answer.status, "headers": _raw(headers)})
    await send({"type": "http.response.body", "body": answer.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
