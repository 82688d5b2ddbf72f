"""piigate in a FastAPI app: ``configure`` once, then ``Depends(require_pii(...))`` per endpoint.

::

    configure(app, client=PiigateClient(url, key), identity=JwtValidator(issuer, aud, jwks))

    @app.put("/customers/{id}")
    async def update(id: str, verdict: Verdict = Depends(
            require_pii("ssn", action="update", resource_type="customer", resource_id_param="id"))):
        ...

The dependency asks the engine exactly as the HTTP gateway's gate does, through the same
``Gate.check``: the caller from ``Authorization`` (an IdP bearer JWT, or a piigate API key with
``api_keys``; none → 401), the grants in ``PIIGate-Grant`` (or the ``piigate_grant``
cookie), the context (client address, ``User-Agent``, ``PIIGate-Device``) and the fields that
bind a ``max_age: 0`` step-up to this one request (method, digests of the target and body).
A request it stops raises :class:`PiigateRefusal`, which the handler ``configure`` installs
renders as the gateway's answer, byte for byte: 401 with the RFC 9470 ``WWW-Authenticate`` and
a problem+json body holding the ``challenge``, 403, 503 (any fault: fail closed).

On allow it returns the :class:`~piigate.gateway.http.verdict.Verdict`: ``verdict.mask`` names
the classes the endpoint must not release. Mask them with :func:`mask` (the gateway's masking);
the middleware (``PiigateMiddleware``) does it for you from the gateway's route configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from typing import Final

import structlog
from fastapi import FastAPI, Request, Response

from piigate.clock import Clock
from piigate.errors import PayloadTooLarge, PiigateError, ServiceUnavailable
from piigate.gateway.http.asgi import (
    DEFAULT_MAX_BODY,
    parsed_body,
    request_headers,
    request_target,
)
from piigate.gateway.http.config import HttpGatewayConfig
from piigate.gateway.http.gate import ApiKeyLookup, Ask, Decider, Gate
from piigate.gateway.http.masking import MaskRule, answer_mask, mask_document
from piigate.gateway.http.paths import PathTemplate
from piigate.gateway.http.routes import IdTemplate, Route, RouteMatch
from piigate.gateway.http.selectors import FieldMap, compile_selector
from piigate.gateway.http.verdict import Answer, Verdict, problem_answer, unlock_headers
from piigate.identity import JwtValidator
from piigate.integrations.client import PiigateClient
from piigate.integrations.wiring import app_gate
from piigate.model import Action

__all__ = [
    "PiigateRefusal",
    "configure",
    "mask",
    "refusal_response",
    "require_pii",
]

log = structlog.get_logger("piigate.integrations")

# Where configure() keeps the gate, on app.state.
STATE: Final = "piigate_gate"
# The dependency's gate has no routes of its own: each require_pii is its route, matched by FastAPI.
_NO_ROUTES: Final = HttpGatewayConfig(source="<require_pii>", upstream="", routes=(), masks={})
_ANY_PATH: Final = PathTemplate.parse("/")


class PiigateRefusal(Exception):
    """piigate stops this request; ``answer`` is what the client gets (see ``configure``)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"piigate refused the request ({answer.status})")
        self.answer = answer


def refusal_response(answer: Answer) -> Response:
    """``answer`` as a response: its status, headers and body as the gateway sends them."""
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PiigateRefusal)
    return refusal_response(exc.answer)


def configure(
    app: FastAPI,
    *,
    engine: Decider | None = None,
    client: PiigateClient | None = None,
    identity: JwtValidator | None = None,
    api_keys: ApiKeyLookup | None = None,
    clock: Clock | None = None,
) -> None:
    """Set up ``require_pii`` for ``app``: the engine, ``engine=`` (in this process: an
    ``EngineDecider``) or ``client=`` (a piigate service); who calls, ``identity=`` (your
    IdP's bearer tokens) and/or ``api_keys=`` (piigate API keys). Installs the handler that
    renders a refusal."""
    assembled = app_gate(
        _NO_ROUTES, engine=engine, client=client, identity=identity, api_keys=api_keys, clock=clock
    )
    setattr(app.state, STATE, assembled.gate)
    app.add_exception_handler(PiigateRefusal, _refused)


def require_pii(
    *classes: str,
    action: Action | str = Action.READ,
    resource_type: str | None = None,
    resource_id_param: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> Callable[[Request], Awaitable[Verdict]]:
    """A dependency: the endpoint touches the PII ``classes`` (the policy's names) with
    ``action``, on the resource ``resource_type`` whose id is the path parameter
    ``resource_id_param``. Returns the verdict on allow; raises :class:`PiigateRefusal`."""
    if not classes:
        raise ValueError("require_pii needs the PII classes the endpoint touches")
    act = Action(action)
    if act is Action.TRANSACT:
        raise ValueError(
            "a transfer is decided on its amount and payee: protect it with PiigateMiddleware "
            "and a route with `transaction:`"
        )
    route = Route(
        index=0,
        methods=None,
        path=_ANY_PATH,
        action=act,
        resource_type=resource_type,
        resource_id=IdTemplate.parse(f"{{{resource_id_param}}}") if resource_id_param else None,
        pii=frozenset(classes),
    )

    async def require(request: Request) -> Verdict:
        gate = _gate(request)
        params = {name: str(value) for name, value in request.path_params.items()}
        if resource_id_param is not None and resource_id_param not in params:
            log.error("require_pii_misconfigured", path_param=resource_id_param)
            raise PiigateRefusal(problem_answer(ServiceUnavailable("piigate is misconfigured")))
        ask = await _ask(request, max_body)
        outcome = await gate.check(ask, RouteMatch(route, params))
        if isinstance(outcome, Answer):
            raise PiigateRefusal(outcome)
        assert outcome.verdict is not None  # a route always has one
        return outcome.verdict

    return require


def _gate(request: Request) -> Gate:
    gate = getattr(request.app.state, STATE, None)
    if not isinstance(gate, Gate):
        log.error("require_pii_not_configured")
        raise PiigateRefusal(
            problem_answer(ServiceUnavailable("piigate is not configured for this app"))
        )
    return gate


async def _ask(request: Request, max_body: int) -> Ask:
    """The request as the gate reads it; its body (cached by Starlette for the endpoint) is
    read for the binding digest."""
    declared = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(f"the request body exceeds {max_body} bytes")
    if declared.isdigit() and int(declared) > max_body:
        raise PiigateRefusal(problem_answer(too_large))
    body = await request.body()
    if len(body) > max_body:
        raise PiigateRefusal(problem_answer(too_large))
    return Ask(
        request.method,
        request_target(request.scope),
        request_headers(request.scope),
        client_ip=request.client.host if request.client else None,
        body=parsed_body(body),
        raw_body=body,
    )


def mask(
    document: object,
    fields: Mapping[str, str],
    verdict: Verdict,
    *,
    rules: Mapping[str, MaskRule] | None = None,
    response: Response | None = None,
) -> object:
    """``document`` with the values of the classes ``verdict`` masks hidden, as the gateway
    masks them. ``fields``: ``{"$.ssn": "ssn", "$.cards[*].number": "card_number"}`` (the
    gateway's selectors); ``rules``: a mask per class (default: the class's default).
    ``response``: gets ``PIIGate-Masked`` and ``PIIGate-Unlock``. A class the verdict masks that
    ``fields`` do not locate refuses the answer (403): it could be anywhere in it."""
    field_map = _field_map(tuple(sorted(fields.items())))
    try:
        masked = answer_mask(verdict.mask, field_map) if verdict.mask else frozenset()
    except PiigateError as exc:
        raise PiigateRefusal(problem_answer(exc)) from None
    if not masked:
        return document
    if response is not None:
        for name, value in unlock_headers(verdict, sorted(masked)):
            response.headers[name] = value
    return mask_document(document, field_map, masked, rules)[0]


@lru_cache(maxsize=256)
def _field_map(fields: tuple[tuple[str, str], ...]) -> FieldMap[str]:
    return FieldMap([(compile_selector(selector), name) for selector, name in fields])
