"""Forward-auth: the gate for a proxy that asks before it forwards a request, and forwards it
itself (nginx ``auth_request``, Traefik ``ForwardAuth``, Envoy ``ext_authz`` as an HTTP
service), served by ``piigate serve`` at ``/v1/forward-auth`` (``api/routes/forward_auth.py``).

It runs the reverse proxy's :meth:`Gate.check` on the same ``gateway.http`` routes; only what
it sees of the request differs. The original request is named by

- ``X-Original-Method`` and ``X-Original-URI`` (nginx: set them with ``proxy_set_header``), or
  ``X-Forwarded-Method`` and ``X-Forwarded-Uri`` (Traefik sets them). Both pairs may come
  (a proxy passes on what the client sent besides its own), and then must name the same
  request: a client must not be able to name another request than the one forwarded;
- or, for Envoy, which appends the original path to its ``path_prefix``, the path after
  ``/v1/forward-auth`` with the call's own method (the headers are then not read).

The client's address is the caller's, unless that is one of ``forward_auth.trusted_proxies``:
then the last hop of ``X-Forwarded-For`` (the address that proxy saw). The caller's
``Authorization``, ``PIIGate-Grant`` and cookies are the original request's.

Forward-auth never sees the request's body or the upstream's answer, so (fail closed):

- a route with ``request_fields`` counts every one of their PII classes as written, as for a
  body that is not JSON;
- a ``transact`` route (its transaction is in the body) is refused with 403: such routes belong
  behind the reverse proxy;
- an allow that masks PII becomes the step-up that unlocks it (401, ``unlock_refusal``): the
  answer would otherwise go out unmasked.

A request that goes on is answered 200 with the verified subject and level in the configured
headers (``gateway.http.headers``; empty when there is none, so that a proxy copying them onto
the request overwrites what the client sent) and the rate-limit headers; a refusal is the
proxy's own answer, status, headers and problem body alike. nginx passes a refusal's status on
but not its body: a call with ``Prefer: piigate-problem-header`` gets the body in
``PIIGate-Problem`` too (JSON, ASCII only), which the nginx configuration gives back as the body.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

import structlog

from piigate.errors import BadRequest, Forbidden, PiigateError
from piigate.gateway.http.assemble import AssembledGate, assemble_gate, in_process
from piigate.gateway.http.config import HttpGatewayConfig, load_gateway_config
from piigate.gateway.http.gate import Ask, Passage
from piigate.gateway.http.routes import Body
from piigate.gateway.http.verdict import Answer, problem_answer, unlock_refusal
from piigate.policy.compiled import CompiledPolicy

if TYPE_CHECKING:
    from piigate.api.services import Services

__all__ = [
    "FORWARD_AUTH_PATH",
    "PROBLEM_HEADER",
    "ForwardAuth",
    "Original",
    "client_address",
    "original_request",
]

log = structlog.get_logger("piigate.gateway")

FORWARD_AUTH_PATH: Final = "/v1/forward-auth"
PROBLEM_HEADER: Final = "PIIGate-Problem"
PROBLEM_PREFERENCE: Final = "piigate-problem-header"
# (method, URI) header pairs: nginx's as its documentation sets them, then Traefik's.
CONVENTIONS: Final = (
    ("x-original-method", "x-original-uri"),
    ("x-forwarded-method", "x-forwarded-uri"),
)
_NEEDS: Final = (
    "forward-auth needs the original request: X-Original-Method and X-Original-URI (nginx), "
    "X-Forwarded-Method and X-Forwarded-Uri (Traefik), or its path after /v1/forward-auth "
    "(Envoy)"
)
_METHOD_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Original:
    """The request the proxy asks about: its method (upper case) and target (path and query)."""

    method: str
    target: str


def original_request(method: str, tail: str | None, headers: Sequence[tuple[str, str]]) -> Original:
    """The original request of a forward-auth call (see the module's doc): ``tail`` is the raw
    path and query after ``/v1/forward-auth`` (None for the bare path); BadRequest without
    one, or with headers that disagree."""
    if tail is not None:
        return Original(_method(method), tail)
    found: set[Original] = set()
    for method_name, uri_name in CONVENTIONS:
        methods = {v.strip() for k, v in headers if k == method_name}
        uris = {v.strip() for k, v in headers if k == uri_name}
        if not methods and not uris:
            continue
        if len(methods) != 1 or len(uris) != 1:
            raise BadRequest(f"{method_name} and {uri_name} must both come, once each")
        found.add(Original(_method(methods.pop()), uris.pop()))
    if not found:
        raise BadRequest(_NEEDS)
    if len(found) > 1:
        raise BadRequest("the forwarded method and URI headers name different requests")
    return found.pop()


def _method(text: str) -> str:
    method = text.upper()
    if not method or not set(method) <= _METHOD_CHARS:
        raise BadRequest("the original request's method is not an HTTP method")
    return method


def client_address(
    peer: str | None, headers: Sequence[tuple[str, str]], config: HttpGatewayConfig
) -> str | None:
    """The client's address: the caller's (``peer``), or, from a trusted proxy, the last hop of
    its ``X-Forwarded-For`` (BadRequest when that is not an IP address)."""
    if peer is None or not config.forward_auth.trusts(peer):
        return peer
    hops = [hop.strip() for k, v in headers if k == "x-forwarded-for" for hop in v.split(",")]
    if not hops:
        return peer
    try:
        return str(ipaddress.ip_address(hops[-1]))
    except ValueError:
        raise BadRequest("X-Forwarded-For's last hop is not an IP address") from None


class ForwardAuth:
    """Forward-auth over an assembled gate; ``source`` is the file its routes were read from."""

    def __init__(self, assembled: AssembledGate, source: str) -> None:
        self.assembled = assembled
        self.gate = assembled.gate
        self.source = source

    @classmethod
    def of_node(cls, services: Services, config: HttpGatewayConfig) -> ForwardAuth:
        """Forward-auth on a started node: its engine and API keys, the IdP of
        ``gateway.http.identity`` (else the node's own), the gateway's rate limits."""
        decider, api_keys = in_process(services)
        assembled = assemble_gate(
            config,
            decider=decider,
            api_keys=api_keys,
            policy=services.policy,
            clock=services.clock,
            jwt=services.jwt,
        )
        return cls(assembled, config.source)

    async def aclose(self) -> None:
        await self.assembled.aclose()

    def reload(self, policy: CompiledPolicy) -> None:
        """Read the routes again against the policy just loaded; a file that cannot be read
        keeps the routes in force (one log line naming the problems)."""
        try:
            self.gate.config = load_gateway_config(self.source, policy)
        except PiigateError as exc:
            log.error("forward_auth_reload_failed", errors=getattr(exc, "errors", [exc.detail]))
            return
        except Exception as exc:  # never let it stop the policy's reloads
            log.error("forward_auth_reload_failed", error=type(exc).__name__)
            return
        log.info("forward_auth_reloaded", routes=len(self.gate.config.routes))

    async def answer(
        self,
        method: str,
        tail: str | None,
        headers: Sequence[tuple[str, str]],
        peer: str | None,
    ) -> Answer:
        """The answer to a forward-auth call (``headers``: lower-case names)."""
        answer = await self._answer(method, tail, headers, peer)
        if answer.status >= 400 and _prefers_problem_header(headers):
            return _with_problem_header(answer)
        return answer

    async def _answer(
        self, method: str, tail: str | None, headers: Sequence[tuple[str, str]], peer: str | None
    ) -> Answer:
        try:
            original = original_request(method, tail, headers)
            ip = client_address(peer, headers, self.gate.config)
            match = self.gate.route(original.method, original.target)
        except PiigateError as exc:
            return problem_answer(exc)
        ask = Ask(original.method, original.target, headers, client_ip=ip)
        if match is not None:
            if match.route.transaction is not None:
                return problem_answer(
                    Forbidden(
                        "this route's transaction is in the request body, which forward-auth "
                        "does not see: put the route behind piigate's reverse proxy"
                    )
                )
            if match.route.reads_body:  # no body here: every class of request_fields counts
                ask = replace(ask, body=Body.UNREADABLE)
        outcome = await self.gate.check(ask, match)
        if isinstance(outcome, Answer):
            return outcome
        return self._passed(outcome)

    def _passed(self, passage: Passage) -> Answer:
        answer = passage.answer_verdict
        if answer is not None and answer.mask:
            return unlock_refusal(answer)
        verdict = passage.verdict
        # Both headers always, empty for none: a proxy that copies them onto the request
        # (Traefik, Envoy) then overwrites whatever the client sent under those names.
        subject = passage.caller.subject.id if passage.caller is not None else ""
        level = verdict.level if verdict is not None and verdict.level is not None else ""
        names = self.gate.config.headers
        headers = [("cache-control", "no-store"), (names.subject, subject), (names.level, level)]
        headers.extend(passage.headers)
        return Answer(200, tuple(headers), b"")


def _prefers_problem_header(headers: Sequence[tuple[str, str]]) -> bool:
    for key, value in headers:
        if key == "prefer":
            for preference in value.split(","):
                if preference.split(";", 1)[0].strip().lower() == PROBLEM_PREFERENCE:
                    return True
    return False


def _with_problem_header(answer: Answer) -> Answer:
    """``answer`` with its problem body in ``PIIGate-Problem`` too, as ASCII JSON (every
    control and non-ASCII character escaped, so it cannot break the header)."""
    try:
        text = json.dumps(json.loads(answer.body), ensure_ascii=True, separators=(",", ":"))
    except ValueError:
        return answer
    headers = (*answer.headers, (PROBLEM_HEADER, text), ("preference-applied", PROBLEM_PREFERENCE))
    return Answer(answer.status, headers, answer.body)
