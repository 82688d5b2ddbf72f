"""``/v1/forward-auth``: the HTTP gateway's gate for nginx ``auth_request``, Traefik
``ForwardAuth`` and Envoy ``ext_authz`` (``gateway/http/forward_auth.py`` decides; this only
translates HTTP).

Every method is accepted: Traefik and nginx call with ``GET`` and name the original request in
headers, Envoy calls with the original method on ``/v1/forward-auth/<original path>``. The
OpenAPI document lists ``GET`` and ``POST`` of each path. Without a ``gateway.http`` section in
the service's configuration file there are no routes to check a request against: 503.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from piigate.api.jsonbody import JsonRoute
from piigate.api.services import get_services
from piigate.errors import BadRequest, ServiceUnavailable
from piigate.gateway.http.forward_auth import FORWARD_AUTH_PATH
from piigate.gateway.http.verdict import PROBLEM_TYPE, Answer, problem_answer

__all__ = ["router"]

router = APIRouter(tags=["gateway"], route_class=JsonRoute)

LISTED: Final = ["GET", "POST"]
UNLISTED: Final = ["HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PROBLEM: Final[dict[str, Any]] = {"content": {PROBLEM_TYPE: {}}}
RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The request may go on. `PIIGate-Subject` and `PIIGate-Level` (the "
        "names of `gateway.http.headers`) carry the verified subject and level; `RateLimit` "
        "and `RateLimit-Policy` the limits.",
    },
    400: {"description": "No original request, or an ambiguous one.", **_PROBLEM},
    401: {
        "description": "No credentials, or a step-up (RFC 9470 `WWW-Authenticate`, the "
        "challenge in the body): also for an allow that would mask PII.",
        **_PROBLEM,
    },
    403: {"description": "Denied (the policy, `default: deny`, a `transact` route).", **_PROBLEM},
    429: {"description": "A rate limit: `Retry-After`.", **_PROBLEM},
    503: {"description": "Cannot decide, or no `gateway.http` routes configured.", **_PROBLEM},
}
SUMMARY: Final = "Forward-auth: may this request go on? (nginx, Traefik)"
ENVOY_SUMMARY: Final = "Forward-auth for Envoy ext_authz: the original path follows"
UNCONFIGURED: Final = "forward-auth needs gateway.http routes in the service's configuration file"
_PREFIX: Final = FORWARD_AUTH_PATH.encode() + b"/"
ENVOY_PATH: Final = FORWARD_AUTH_PATH + "/{path:path}"


async def forward_auth(request: Request) -> Response:
    return await _answer(request, tail=None)


async def forward_auth_path(request: Request, path: str) -> Response:
    # ``path`` is there for the OpenAPI document: the original path is read as sent (its
    # percent-escapes and all), as the route reads it.
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    if not raw.startswith(_PREFIX):  # the prefix itself escaped: which path is meant?
        return _response(problem_answer(BadRequest("write /v1/forward-auth/ unescaped")))
    tail = raw[len(_PREFIX) - 1 :].decode("latin-1")
    query = request.scope.get("query_string") or b""
    return await _answer(request, tail=f"{tail}?{query.decode('latin-1')}" if query else tail)


def _declare(path: str, endpoint: Callable[..., Awaitable[Response]], summary: str) -> None:
    """``path`` for every method; one operation per listed method in the OpenAPI document."""
    for method in LISTED:
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            summary=summary,
            responses=RESPONSES,
            response_class=Response,
            operation_id=f"{endpoint.__name__}_{method.lower()}",
        )
    router.add_api_route(path, endpoint, methods=UNLISTED, include_in_schema=False)


_declare(FORWARD_AUTH_PATH, forward_auth, SUMMARY)
_declare(ENVOY_PATH, forward_auth_path, ENVOY_SUMMARY)


async def _answer(request: Request, *, tail: str | None) -> Response:
    services = get_services(request)
    gate = services.forward_auth
    if gate is None:
        return _response(problem_answer(ServiceUnavailable(UNCONFIGURED)))
    started = time.perf_counter()
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    peer = request.client.host if request.client else None
    answer = await gate.answer(request.method, tail, headers, peer)
    elapsed = time.perf_counter() - started
    services.metrics.gateway.observe(("forward_auth", f"{answer.status // 100}xx"), elapsed)
    return _response(answer)


def _response(answer: Answer) -> Response:
    response = Response(answer.body, status_code=answer.status)
    response.raw_headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers
    )
    return response
