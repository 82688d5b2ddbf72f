"""The reverse proxy (``piigate gateway http``): an ASGI application in front of the upstream API.

Per request: the framing is checked (a request with both ``Content-Length`` and
``Transfer-Encoding``, or two different lengths, is refused: a request smuggled past one parser
must not reach another); the route is matched; a route that decides on the request body
(``request_fields``, ``transaction``) has its body read, up to ``max_body`` bytes (413 beyond),
and parsed exactly (``jsontext.loads_exact``: numbers as written, duplicate keys refused, not
JSON → every class of ``request_fields`` counts as touched); the :class:`Gate` decides. A
refused request never reaches the upstream.

A request that goes on is sent upstream with its headers rewritten (``upstream.py``) and the
verified subject and level in the configured headers. A safe one (``GET``, ``HEAD``,
``OPTIONS``: RFC 9110 §9.2.1, it asks the upstream to change nothing) is sent as soon as it is
allowed, while the decision's audit event is being committed (``Gate.check_early``); nothing of
the answer leaves before that commit, and if it fails the upstream's answer is dropped unread
and the client gets the 503. Any other method reaches the upstream only once its decision is
audited. Its answer streams back as it comes, unless the verdict on reading it
(``Passage.answer_verdict``: the request's own on a ``read`` route, else the decision on
reading the answer's PII) masks PII that the route's ``response_fields`` locate: that answer is
read whole (up to ``max_response`` bytes), parsed and masked (``masking.mask_json_answer``) as
soon as it comes, while the audit event may still be committing, then sent with
``PIIGate-Masked`` and ``PIIGate-Unlock`` (naming the challenge as audited). Fail closed: an
answer that cannot be masked (not JSON, compressed, too large) is a 502 problem, never passed
through; a mask for a class the route cannot locate in its answer is a 403.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Final

import structlog

from piigate.api.metrics import LatencyHistogram
from piigate.errors import BadRequest, PiigateError
from piigate.gateway.http.asgi import (
    ClientGone,
    Message,
    Receive,
    Scope,
    Send,
    has_body,
    raw_headers,
    read_ask,
    request_chunks,
    request_headers,
    request_target,
    send_answer,
    verified_headers,
)
from piigate.gateway.http.gate import Ask, Gate, Passage
from piigate.gateway.http.masking import (
    NotMaskable,
    answer_mask,
    mask_json_answer,
    masked_answer_headers,
    masked_request_headers,
)
from piigate.gateway.http.overrides import FormScan, MultipartScan, body_kind, scanned
from piigate.gateway.http.routes import Route
from piigate.gateway.http.upstream import (
    Upstream,
    UpstreamAnswer,
    UpstreamUnavailable,
    downstream_headers,
    upstream_headers,
)
from piigate.gateway.http.verdict import Answer, problem_answer, unlock_headers

__all__ = ["SAFE_METHODS", "BadFraming", "HttpGateway", "framing_problem"]

log = structlog.get_logger("piigate.gateway")

DEFAULT_MAX_RESPONSE: Final = 16 * 1024 * 1024
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# The phases of ``piigate_gateway_http_phase_seconds`` (see ``HttpGateway``).
_DECISION: Final = ("decision",)
_UPSTREAM: Final = ("upstream",)
_MASKING: Final = ("masking",)
_AUDIT_WAIT: Final = ("audit_wait",)


class BadFraming(BadRequest):
    """A request whose length two parsers could read differently: refused, and the connection
    closed, since where the next request starts is not known either (RFC 9112 §6.3)."""

    def headers(self) -> Mapping[str, str]:
        return {"Connection": "close"}


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
        max_response: int = DEFAULT_MAX_RESPONSE,
        timings: LatencyHistogram | None = None,
        phases: LatencyHistogram | None = None,
    ) -> None:
        """``timings``: counts each request's time (``piigate_gateway_request_seconds``);
        ``phases``: where it goes (``piigate_gateway_http_phase_seconds``): ``decision``, from
        its arrival to the gate's verdict (for a refusal or a method that is not safe, its
        audit commit included); ``upstream``, from sending it to the upstream's status and
        headers; ``masking``, the answer read whole and masked; ``audit_wait``, the answer
        ready and waiting for the decision's audit commit (a safe method's: the commit runs
        meanwhile, and this is what it adds)."""
        self.gate = gate
        self.upstream = upstream
        self.max_response = max_response
        self.timings = timings
        self.phases = phases

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets are not proxied
            return
        if self.timings is None:
            await self._answer(scope, receive, send)
            return
        timings = self.timings
        arrived = time.perf_counter()
        status = 0

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._answer(scope, receive, tracked)
        finally:
            code = f"{status // 100}xx" if status else "none"
            timings.observe(("http", code), time.perf_counter() - arrived)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request handled, or its error answered when nothing was sent yet."""
        headers = request_headers(scope)
        started = False

        async def sent(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._handle(scope, receive, sent, headers)
        except ClientGone:
            return
        except Exception as exc:
            if started:  # the answer broke off mid-body: left unfinished, the server drops it
                log.warning("gateway_answer_broke_off", error=type(exc).__name__)
                return
            if not isinstance(exc, PiigateError):  # the type only: its text may quote the request
                log.error("gateway_unhandled_error", error=type(exc).__name__)
                exc = PiigateError("internal error")
            await send_answer(send, problem_answer(exc))

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[str, str]]
    ) -> None:
        arrived = time.perf_counter()
        problem = framing_problem(headers)
        if problem is not None:
            raise BadFraming(f"the request has {problem}")
        match = self.gate.route(scope["method"], request_target(scope))
        # gateway.http.max_body, as the configuration in force says (a reload's applies at once)
        max_body = self.gate.config.max_body
        ask, body = await read_ask(scope, receive, headers, match, max_body)
        if ask.method in SAFE_METHODS:
            outcome = await self.gate.check_early(ask, match)
        else:
            outcome = await self.gate.check(ask, match)
        if self.phases is not None:
            self.phases.observe(_DECISION, time.perf_counter() - arrived)
        if isinstance(outcome, Answer):
            await send_answer(send, outcome)
            return
        masked: frozenset[str] = frozenset()
        verdict = outcome.answer_verdict
        if match is not None and verdict is not None:
            masked = answer_mask(verdict.mask, match.route.response_fields)
        await self._forward(scope, receive, send, ask, outcome, body, masked)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ask: Ask,
        passage: Passage,
        body: bytes | None,
        masked: frozenset[str],
    ) -> None:
        drop, verified = verified_headers(self.gate.config.headers, passage)
        out = upstream_headers(
            ask.headers, drop=drop, client_ip=ask.client_ip, scheme=scope["scheme"]
        )
        out.extend(verified)
        if masked:  # the answer is read and masked: whole and uncompressed
            out = masked_request_headers(out)
        content: bytes | AsyncIterator[bytes] | None = body
        if body is None and has_body(ask.headers):
            content = request_chunks(receive)
            kind = body_kind(ask.method, ask.headers)  # its _method, looked for as it streams
            if kind == "multipart":
                content = scanned(content, MultipartScan.for_headers(ask.headers))
            elif kind == "bare":
                content = scanned(content, FormScan())
        sending = self.upstream.send(ask.method, ask.target, out, content)
        # A masked answer is read and masked as soon as it comes, while the audit may still
        # be committing; it leaves once the decision is audited.
        prepare: Callable[[UpstreamAnswer], Awaitable[bytes]] | None = None
        if masked:
            assert passage.route is not None
            prepare = functools.partial(self._masked_body, route=passage.route, masked=masked)
        answering = _answered(sending, prepare, self.phases)
        if passage.audited is None:
            answer, masked_body = await answering
        else:
            passage, answer, masked_body = await _audited_meanwhile(passage, answering, self.phases)
        try:
            if masked:  # fail closed: a masked route's answer leaves only as masked
                assert masked_body is not None
                await self._send_masked(
                    send, answer, passage, masked, masked_body, ask.method == "HEAD"
                )
            else:
                await _stream_back(send, answer, passage.headers)
        finally:
            await answer.aclose()

    async def _masked_body(
        self, answer: UpstreamAnswer, route: Route, masked: frozenset[str]
    ) -> bytes:
        """The upstream's answer read whole and masked; ``UpstreamUnavailable`` (a 502) when it
        cannot be (fail closed: too large, not JSON, compressed)."""
        raw = await answer.read(self.max_response)
        if raw is None:
            raise UpstreamUnavailable("the upstream's answer is too large to mask")
        try:
            return mask_json_answer(
                raw,
                answer.header("content-encoding"),
                route.response_fields,
                masked,
                self.gate.config.masks,
            )
        except NotMaskable as exc:
            log.warning("upstream_not_maskable", route=route.label, status=answer.status)
            raise UpstreamUnavailable(f"the upstream's answer {exc.reason}") from None

    async def _send_masked(
        self,
        send: Send,
        answer: UpstreamAnswer,
        passage: Passage,
        masked: frozenset[str],
        raw: bytes,
        head: bool,
    ) -> None:
        """The masked answer ``raw``, with the headers of the verdict as audited."""
        verdict = passage.answer_verdict
        assert verdict is not None
        headers = masked_answer_headers(downstream_headers(answer.headers))
        if not head:  # a HEAD answer's length would be the GET's, unknown here
            headers.append(("content-length", str(len(raw))))
        headers.extend(unlock_headers(verdict, sorted(masked)))
        headers.extend(passage.headers)
        start: Message = {
            "type": "http.response.start",
            "status": answer.status,
            "headers": raw_headers(headers),
        }
        await send(start)
        await send({"type": "http.response.body", "body": raw})


async def _answered(
    sending: Awaitable[UpstreamAnswer],
    prepare: Callable[[UpstreamAnswer], Awaitable[bytes]] | None,
    phases: LatencyHistogram | None,
) -> tuple[UpstreamAnswer, bytes | None]:
    """The upstream's answer, and what ``prepare`` makes of it (a masked answer's body, read
    and masked); each step timed in ``phases``."""
    started = time.perf_counter()
    answer = await sending
    answered = time.perf_counter()
    prepared = None if prepare is None else await _read_or_close(answer, prepare)
    if phases is not None:
        phases.observe(_UPSTREAM, answered - started)
        if prepare is not None:
            phases.observe(_MASKING, time.perf_counter() - answered)
    return answer, prepared


async def _audited_meanwhile(
    passage: Passage,
    answering: Awaitable[tuple[UpstreamAnswer, bytes | None]],
    phases: LatencyHistogram | None,
) -> tuple[Passage, UpstreamAnswer, bytes | None]:
    """``answering`` (:func:`_answered`) for a request sent while its decision's audit event
    commits, and the passage with the verdict as audited. A failed commit comes first: the
    upstream's answer is then closed and its problem (a 503) raised, whatever became of the
    rest."""
    assert passage.audited is not None
    try:
        answer, prepared = await answering
    except BaseException:
        await passage.audited()
        raise
    started = time.perf_counter()
    try:
        verdict = await passage.audited()
    except BaseException:
        await answer.aclose()
        raise
    if phases is not None:
        phases.observe(_AUDIT_WAIT, time.perf_counter() - started)
    return dataclasses.replace(passage, verdict=verdict, audited=None), answer, prepared


async def _read_or_close(
    answer: UpstreamAnswer, prepare: Callable[[UpstreamAnswer], Awaitable[bytes]]
) -> bytes:
    """``prepare(answer)``, the answer closed if that fails."""
    try:
        return await prepare(answer)
    except BaseException:
        await answer.aclose()
        raise


async def _stream_back(
    send: Send, answer: UpstreamAnswer, extra: Sequence[tuple[str, str]]
) -> None:
    headers = downstream_headers(answer.headers)
    length = answer.header("content-length")
    if length is not None:
        headers.append(("content-length", length))
    headers.extend(extra)
    # The first part before the status line: an upstream failing at once is a problem.
    first = await answer.chunk()
    start: Message = {
        "type": "http.response.start",
        "status": answer.status,
        "headers": raw_headers(headers),
    }
    await send(start)
    if answer.complete:  # all of it came with the first part, as small answers do
        await send({"type": "http.response.body", "body": first})
        return
    await send({"type": "http.response.body", "body": first, "more_body": True})
    while chunk := await answer.chunk():  # a failure from here on breaks the connection off
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
