"""``POST /v1/decisions`` (CONTRACT §4.2): apps and gateways ask, the engine answers.

The route is declared once, as a FastAPI route: it defines the API (OpenAPI, validation, errors)
and answers every request that is not the plain case. The plain case -- an API key with the
``decisions`` scope and a JSON body that validates -- is what gateways send thousands of times a
second, so :func:`install_lean_route` puts a lean handler in front of it (see ``LeanDecisions``).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Message, Receive, Scope, Send

from piigate.api.auth import Principal, require_scope
from piigate.api.schemas import DecisionRequestIn, decision_json
from piigate.api.services import Services, get_services
from piigate.errors import BadRequest, ServiceUnavailable, step_up_header
from piigate.model import AccessRequest, Outcome, SessionAuth

__all__ = ["install_lean_route", "router"]

router = APIRouter(tags=["decisions"])

PATH = "/v1/decisions"
SCOPE = "decisions"
ROLES = frozenset({"admin"})
# Clock skew tolerated between the caller's IdP and this node (the JWT validator's leeway).
AUTH_TIME_SKEW = 60


@router.post(
    PATH,
    summary="Decide whether a request may touch PII",
    response_class=JSONResponse,
    responses={200: {"description": "The decision (CONTRACT §4.2)"}},
)
async def create_decision(
    body: DecisionRequestIn,
    request: Request,
    principal: Annotated[Principal, Depends(require_scope(SCOPE, roles=ROLES))],
) -> JSONResponse:
    services = get_services(request)
    access = _access_request(body, services)
    # A plain JSON response: the body is built from our own dataclasses, so re-validating it
    # against an inferred response model would only cost time on the hot path.
    return JSONResponse(await _decide(services, access, principal.id))


def _access_request(body: DecisionRequestIn, services: Services) -> AccessRequest:
    """The checks that need the policy and the clock, then the engine's request."""
    compiled = services.policy.current
    if compiled is None:
        raise ServiceUnavailable("no policy is loaded")
    auth_time = body.session.auth_time
    if auth_time is not None and auth_time > services.clock.now().timestamp() + AUTH_TIME_SKEW:
        # It would look fresh for as long as it stays in the future (as for IdP tokens).
        raise BadRequest("session.auth_time: in the future", field="session.auth_time")
    return body.to_domain(compiled)


async def _decide(services: Services, access: AccessRequest, requested_by: str) -> dict[str, Any]:
    """Decide (audited), count it, and build the response body."""
    started = time.perf_counter()
    decision = await services.engine.decide(access, requested_by=requested_by)
    services.metrics.observe(decision, time.perf_counter() - started)
    header = None
    if decision.outcome is Outcome.STEP_UP and decision.required is not None:
        header = step_up_header(decision.required.acr_values, decision.required.max_age)
    return decision_json(decision, header)


# -- the lean path ----------------------------------------------------------------------------

# Starlette's JSONResponse.render, prebuilt: the same bytes for the same body.
_RENDER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


class LeanDecisions(BaseRoute):
    """``POST /v1/decisions`` without FastAPI's per-request machinery, same answers.

    FastAPI resolves the route twice through its included routers, solves the dependency
    graph, builds a ``Request``, and validates the body; on this endpoint that cost more CPU
    than the decision and its audit together. This route sits first in the app's routes, inside
    every middleware (the body cap, the exception handlers), and claims only ``POST`` to the
    decisions path. It decides itself only when every step the FastAPI route would take succeeds
    the same way: the body arrives whole, is JSON as FastAPI would parse it (content type,
    ``json.loads``), the bearer credential is an API key that authenticates with the scope, and
    the body validates exactly as FastAPI validates it (``model_validate`` of the parsed
    object). Anything else -- a missing or wrong credential, a JWT or session cookie, malformed
    JSON, a validation error, a store failure while authenticating, a client disconnect -- is
    handed to the FastAPI route with the body replayed, so every error response, status and
    header comes from the one declared route, in its own order. Nothing with an effect happens
    before that hand-off (authentication only fills the key cache).

    From the policy checks on, both paths run the same functions (``_access_request``,
    ``_decide``); errors raised there reach the app's exception handlers as the route's would,
    with ``scope["route"]`` set to the declared route so problems name it.
    """

    def __init__(self, declared: BaseRoute, fallback: BaseRoute) -> None:
        self.declared = declared  # the FastAPI route (for problem ``instance``, OpenAPI)
        self.fallback = fallback  # the router inclusion that serves it the usual way
        self.path_format = PATH  # what the router reports as the selected route (telemetry)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Served under a root path (behind a prefixing proxy), the declared route matches.
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == PATH
            and not scope.get("root_path")
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # the declared route owns the name

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        received: list[Message] = []
        body = await _read_body(receive, received)
        ready = None if body is None else await _plain_request(scope, body)
        if ready is None:
            await self.fallback.handle(scope, _replay(received, receive), send)
            return
        services, principal_id, parsed = ready
        scope["route"] = self.declared
        access = _access_request(parsed, services)
        payload = _RENDER.encode(await _decide(services, access, principal_id)).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(payload)).encode("latin-1")),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, received: list[Message]) -> bytes | None:
    """The whole body, keeping every message for a replay; None if the client went away."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(received: list[Message], receive: Receive) -> Callable[[], Awaitable[Message]]:
    pending = deque(received)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


async def _plain_request(
    scope: Scope, body: bytes
) -> tuple[Services, str, DecisionRequestIn] | None:
    """Services, API key id and parsed body when this is the plain case; None otherwise."""
    services = getattr(scope["app"].state, "services", None)
    if services is None or not body:
        return None
    authorization = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    if content_type is not None and not _is_plain_json(content_type):
        return None
    if authorization is None:
        return None
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer":
        return None
    try:
        key = await services.api_keys.authenticate(credential)  # None unless an API key
    except Exception:
        return None  # the declared route asks again and answers with the error, in its order
    if key is None:
        return None
    principal = Principal("api_key", key.id, key.as_subject(), SessionAuth())
    if not principal.has(scope=SCOPE, roles=ROLES):
        return None
    try:
        # What FastAPI does with a JSON body: Starlette's json.loads, then the body field's
        # validate_python(..., from_attributes=True).
        parsed = DecisionRequestIn.model_validate(json.loads(body), from_attributes=True)
    except Exception:  # malformed, invalid, too deeply nested: the declared route answers
        return None
    return services, principal.id, parsed


def _is_plain_json(content_type: str) -> bool:
    """``application/json`` with any parameters; rarer JSON types take the declared route."""
    return content_type.partition(";")[0].strip().lower() == "application/json"


def install_lean_route(app: FastAPI) -> None:
    """Put :class:`LeanDecisions` first in ``app``'s routes (after ``include_router``)."""
    declared = next(route for route in router.routes if getattr(route, "path", None) == PATH)
    fallback = next(
        route for route in app.router.routes if getattr(route, "original_router", None) is router
    )
    app.router.routes.insert(0, LeanDecisions(declared, fallback))
