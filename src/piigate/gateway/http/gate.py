"""The gate: one request in, the engine's verdict out, for the reverse proxy and forward-auth.

:meth:`Gate.check` takes what the client sent (an :class:`Ask`) through the same steps on both
edges: the route it takes (``config.match``; no route → through, or 403 with ``default:
deny``), who calls (an IdP bearer JWT or a piigate API key; none → 401), the rate limits, the
engine's request (``routes.route_request``: action, resource, PII classes, transaction), and the
decision; on a route that is not a read but names PII in its answer, a second decision on
reading that answer, whose verdict masks it. What stops the request is an
:class:`~piigate.gateway.http.verdict.Answer` (401 step-up, 403, 429, 400, 503); what goes on
is a :class:`Passage`, with the verdict whose mask the proxy applies to the answer.

Fail closed: any fault on the way (the store, the engine, the link to a remote engine, a rate
limit store) is a 503 problem; PII never goes through on an error.

:meth:`Gate.check_early` is the same check for an edge that may start forwarding an allowed
request while the decision's audit event is still being committed (the reverse proxy, for a
safe method): its passage carries ``audited``, which the edge awaits before anything of the
answer leaves, and which raises the problem (fail closed) when the decision could not be
audited. A refusal waits for its audit event in both: it is an answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import structlog

from piigate.api.auth import API_KEY_PREFIX, GRANT_COOKIE, GRANT_HEADER, bearer_credential
from piigate.api.devices import DEVICE_COOKIE
from piigate.callers import Caller, CallerKind
from piigate.clock import Clock
from piigate.errors import (
    BadRequest,
    Forbidden,
    PiigateError,
    ServiceUnavailable,
    Unauthorized,
)
from piigate.gateway.http.config import Default, HttpGatewayConfig
from piigate.gateway.http.overrides import (
    METHOD_OVERRIDE_HEADERS,
    OVERRIDE_DETAIL,
    body_kind,
    body_names_method,
    boundaries_of,
    names_method,
)
from piigate.gateway.http.ratelimit import RateLimiter
from piigate.gateway.http.routes import Body, Route, RouteMatch, route_request
from piigate.gateway.http.verdict import (
    Answer,
    Audited,
    Verdict,
    answer_masks,
    problem_answer,
    refusal,
)
from piigate.identity import JwtValidator
from piigate.model import AccessRequest, Context, Outcome

__all__ = [
    "DEVICE_HEADER",
    "HEADER_TEXT",
    "ApiKeyLookup",
    "Ask",
    "Decider",
    "Gate",
    "GatewayCallers",
    "Passage",
    "cookie_value",
]

log = structlog.get_logger("piigate.gateway")

DEVICE_HEADER: Final = "piigate-device"
# What a header value may hold (visible ASCII, single spaces between): a subject id from an IdP
# token goes to the upstream in a header and must not be able to break it.
HEADER_TEXT: Final = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_GRANT_HEADER: Final = GRANT_HEADER.lower()
# Fields a request has one of (RFC 9110 §5.3): given twice, the gate would read one and the
# upstream maybe the other (a second Authorization: another caller than the one ruled on).
_SINGLE: Final = frozenset({"authorization", "content-type"})
# The decision API's limits (``decision_request.ContextIn``).
_MAX_USER_AGENT: Final = 1024
_MAX_DEVICE_ID: Final = 255


@dataclass(frozen=True, slots=True)
class Ask:
    """One client request as the gate reads it. ``headers`` are lower-case names with their
    values (repeated names kept); ``body`` is the parsed JSON document, or a :class:`Body`."""

    method: str
    target: str  # path and query, as sent
    headers: Sequence[tuple[str, str]]
    client_ip: str | None = None
    body: object = Body.ABSENT
    raw_body: bytes = b""  # the body as sent, when the gate read it

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Passage:
    """A request that goes on: its route (None: no route matched and ``default: pass``), who
    asked, and the verdict (None without a route)."""

    route: Route | None
    caller: Caller | None = None
    verdict: Verdict | None = None
    # Rate-limit headers for the client's answer.
    headers: tuple[tuple[str, str], ...] = field(default=())
    # From check_early: the verdict as audited, to await before the answer leaves.
    audited: Audited | None = None
    # On a route that is not a read: the verdict on reading its answer's PII, as a mask
    # (``RoutedRequest.answer_reading``, ``verdict.answer_masks``).
    reading: Verdict | None = None

    @property
    def answer_verdict(self) -> Verdict | None:
        """The verdict whose ``mask`` the answer gets: a read route's own, else its reading's."""
        return self.reading if self.reading is not None else self.verdict


class Decider(Protocol):
    """The engine, in this process or in a piigate service (``gateway/http/deciders.py``)."""

    async def decide(self, request: AccessRequest, caller: Caller) -> Verdict: ...

    async def decide_early(self, request: AccessRequest, caller: Caller) -> tuple[Verdict, Audited]:
        """The verdict as soon as it is made, and the verdict as audited (``Audited``)."""
        ...


ApiKeyLookup = Callable[[str], Awaitable[Caller]]


class GatewayCallers:
    """Who calls: an IdP's bearer JWT (``jwt``), or a piigate API key (``api_keys``: raises
    ``Unauthorized`` for a key that is none). Either may be absent: its credentials are then
    refused with a 401 that says so."""

    def __init__(
        self, *, jwt: JwtValidator | None, api_keys: ApiKeyLookup | None, clock: Clock
    ) -> None:
        self.jwt = jwt
        self.api_keys = api_keys
        self.clock = clock

    async def caller(self, authorization: str | None) -> Caller | None:
        if not authorization:
            return None
        credential = bearer_credential(authorization)
        if credential.startswith(API_KEY_PREFIX):
            if self.api_keys is None:
                raise Unauthorized("API keys are not accepted here: use your identity provider")
            return await self.api_keys(credential)
        if self.jwt is None:
            raise Unauthorized("bearer tokens are not accepted: no identity provider configured")
        token = await self.jwt.validate(credential, now=self.clock.now())
        return Caller.person(token.subject, token.session, kind=CallerKind.JWT)


class Gate:
    def __init__(
        self,
        config: HttpGatewayConfig,
        *,
        callers: GatewayCallers,
        decider: Decider,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config  # replaced whole on a reload
        self.callers = callers
        self.decider = decider
        self.limiter = limiter

    def route(self, method: str, target: str) -> RouteMatch | None:
        """The route a request takes (``BadRequest`` for an ambiguous path)."""
        return self.config.match(method, target)

    async def check(self, ask: Ask, match: RouteMatch | None) -> Passage | Answer:
        """The passage of ``ask`` on its route ``match`` (:meth:`route`), or the answer that
        stops it (see the module's doc)."""
        try:
            return await self._check(ask, match, early=False)
        except Exception as exc:
            return _problem(exc)

    async def check_early(self, ask: Ask, match: RouteMatch | None) -> Passage | Answer:
        """:meth:`check`, an allow's passage given before its audit event is durable (see the
        module's doc)."""
        try:
            return await self._check(ask, match, early=True)
        except Exception as exc:
            return _problem(exc)

    async def _check(self, ask: Ask, match: RouteMatch | None, *, early: bool) -> Passage | Answer:
        _refuse_ambiguous(ask)
        if match is None:
            if self.config.default is Default.DENY:
                raise Forbidden("no route of this gateway allows this request")
            return await self._limited(ask, None, None) or Passage(None)
        caller = await self.callers.caller(ask.header("authorization"))
        if caller is None:
            raise Unauthorized("this request needs Authorization: Bearer <token>")
        if not HEADER_TEXT.fullmatch(caller.subject.id):  # it goes upstream in a header
            raise Forbidden("the subject id cannot be sent in a header")
        limited = await self._limited(ask, caller, match.route)
        routed = route_request(match, ask.body)
        request = routed.access_request(
            subject=caller.subject,
            session=caller.session,
            context=_context(ask),
            grants=presented_grants(ask),
            binding_fields=binding_fields(ask),
        )
        audited = None
        if not early:
            verdict = await self.decider.decide(request, caller)
        else:
            verdict, audited = await self.decider.decide_early(request, caller)
            if verdict.outcome is not Outcome.ALLOW:
                verdict, audited = await audited(), None
        stop = refusal(verdict)
        if stop is not None:
            return stop
        reading = None
        answer_read = routed.answer_reading(request)
        if answer_read is not None:
            read = await self.decider.decide(answer_read, caller)
            reading = answer_masks(read, answer_read.pii)
        headers = limited.headers if limited is not None else ()
        return Passage(
            match.route, caller, verdict, headers, audited=_failing_closed(audited), reading=reading
        )

    async def _limited(
        self, ask: Ask, caller: Caller | None, route: Route | None
    ) -> Passage | None:
        """None without limits, else a passage carrying the limits' headers; raises the 429."""
        if self.limiter is None:
            return None
        result = await self.limiter.check(
            subject=None if caller is None or caller.is_app else caller.id,
            api_key=caller.id if caller is not None and caller.is_app else None,
            ip=ask.client_ip,
            route=None if route is None else route.label,
        )
        if not result.allowed:
            raise result.refusal()  # 429 with Retry-After and the RateLimit headers
        return Passage(route, caller, headers=tuple(result.headers.items()))


def _problem(exc: Exception) -> Answer:
    """The answer to a fault on the way: its own problem (400, 401 for an invalid token, 403,
    429, 503 for the IdP's keys), or a 503 (fail closed: a fault never lets a request through)."""
    if isinstance(exc, PiigateError):
        return problem_answer(exc)
    log.error("gateway_check_failed", error=type(exc).__name__)
    return problem_answer(ServiceUnavailable("the gateway cannot decide right now"))


def _failing_closed(audited: Audited | None) -> Audited | None:
    """``audited`` raising a ``PiigateError`` whatever its fault (a 503 but for its own)."""
    if audited is None:
        return None

    async def checked() -> Verdict:
        try:
            return await audited()
        except PiigateError:
            raise
        except Exception as exc:
            log.error("gateway_check_failed", error=type(exc).__name__)
            raise ServiceUnavailable("the gateway cannot decide right now") from exc

    return checked


def _context(ask: Ask) -> Context:
    """The end user's context: their address, user agent and device as they presented it (the
    ``piigate_device`` cookie's value, else ``PIIGate-Device``), unchecked: the engine's side
    resolves it (``DeviceCookies.resolve``: a forged cookie counts as no device)."""
    agent = ask.header("user-agent")
    device = cookie_value(ask.headers, DEVICE_COOKIE)
    if device is None:
        device = ask.header(DEVICE_HEADER)
    return Context(
        ip=ask.client_ip,
        user_agent=agent[:_MAX_USER_AGENT] if agent else None,
        device_id=device if device and len(device) <= _MAX_DEVICE_ID else None,
    )


def presented_grants(ask: Ask) -> tuple[str, ...]:
    """The grant tokens the client presents: ``PIIGate-Grant`` headers, else the cookie."""
    found = tuple(v.strip() for k, v in ask.headers if k == _GRANT_HEADER and v.strip())
    if found:
        return found[:8]
    cookie = cookie_value(ask.headers, GRANT_COOKIE)
    return (cookie,) if cookie else ()


def _refuse_ambiguous(ask: Ask) -> None:
    """``BadRequest`` when the upstream could read ``ask`` otherwise than the gate: a header it
    has once given twice, or a method override (``overrides``: a header, or a ``_method`` in
    its query or in the form, JSON object or multipart body it posts, when the gate read it;
    a multipart body, or a POST's without a Content-Type, is scanned as it streams on). The
    headers are walked once, their names read with ``_`` as ``-``, as upstreams that map them
    to ``HTTP_X_Y`` read them."""
    seen: set[str] = set()
    for name, _ in ask.headers:
        key = name.replace("_", "-")  # one HTTP_X_Y variable for both, behind CGI or Rack
        if key in METHOD_OVERRIDE_HEADERS:
            raise BadRequest(OVERRIDE_DETAIL)
        if key in _SINGLE:
            if key in seen:
                raise BadRequest(f"the request has more than one {key} header")
            seen.add(key)
    kind = body_kind(ask.method, ask.headers)
    if kind == "multipart":
        boundaries_of(ask.headers)  # a multipart body without one: 400 before anything goes on
    if names_method(ask.target.partition("?")[2]) or (
        kind is not None
        and ask.raw_body
        and body_names_method(kind, ask.raw_body, ask.headers, ask.body)
    ):
        raise BadRequest(OVERRIDE_DETAIL)


def cookie_value(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The value of cookie ``name`` in the ``Cookie`` headers (RFC 6265 §5.4), if any."""
    for key, value in headers:
        if key != "cookie":
            continue
        for pair in value.split(";"):
            cname, sep, cvalue = pair.strip().partition("=")
            if sep and cname == name:
                return cvalue.strip().strip('"') or None
    return None


def binding_fields(ask: Ask) -> Mapping[str, str]:
    """What identifies this one request for a ``max_age: 0`` step-up, besides what the engine
    binds itself (subject, action, resource, PII classes, transaction): the method, and digests
    of the target and of the body (its JSON canonical form, so a retry may re-serialize it).
    Digests only: the path or the body may hold PII."""
    fields = {"method": ask.method.upper(), "target": _digest(ask.target.encode())}
    if not isinstance(ask.body, Body):
        canonical = json.dumps(ask.body, sort_keys=True, separators=(",", ":"), default=str)
        fields["body"] = _digest(canonical.encode())
    elif ask.raw_body:
        fields["body"] = _digest(ask.raw_body)
    return fields


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
