"""``POST /v1/decisions`` (CONTRACT §4.2): apps and gateways ask, the engine answers.

The route's contract is defined once and both paths run it: the caller is authenticated by
``api.auth`` (``bearer_credential``, ``api_key_caller``) and admitted by ``ACCESS``; the body is
validated by the declared route's own body field; every error is answered by the app's handler
for its class (``api.problems``). The declared FastAPI route defines the API (OpenAPI,
validation, errors) and answers every request but the plain case: an API key with the
``decisions`` scope and a JSON body that validates, which gateways send thousands of times a
second. The app puts a lean handler in front of everything for that case (see
``LeanDecisions``): the same steps without FastAPI's per-request machinery.
"""

from __future__ import annotations

import inspect
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from piigate.api.auth import (
    API_KEY_PREFIX,
    Access,
    api_key_caller,
    bearer_credential,
    require_access,
)
from piigate.api.schemas import DecisionRequestIn, decision_json
from piigate.api.services import Services, get_services
from piigate.errors import BadRequest, ServiceUnavailable, step_up_header
from piigate.model import AccessRequest, Caller, Outcome

__all__ = ["LeanDecisions", "lean_decisions", "router"]

# A body without a content type is read as JSON, as gateways send it (and as the lean path reads
# it); any other content type must still say JSON (``application/json`` or ``*/*+json``).
router = APIRouter(tags=["decisions"], strict_content_type=False)

PATH = "/v1/decisions"
# Who may ask (CONTRACT §4.1): API keys and tokens with scope ``decisions``, or role ``admin``.
ACCESS = Access("decisions", roles=frozenset({"admin"}))
# Clock skew tolerated between the caller's IdP and this node (the JWT validator's leeway).
AUTH_TIME_SKEW = 60


class DecisionResponse(JSONResponse):
    """A decision as compact UTF-8 JSON, rendered by pydantic-core's serializer.

    The same bytes as Starlette's ``json.dumps`` rendering for these bodies (plain strings,
    integers, lists, maps), in a fifth of the time; the lean path renders with it too.
    """

    def render(self, content: Any) -> bytes:
        return to_json(content)


@router.post(
    PATH,
    summary="Decide whether a request may touch PII",
    response_class=DecisionResponse,
    responses={200: {"description": "The decision (CONTRACT §4.2)"}},
)
async def create_decision(
    body: DecisionRequestIn,
    request: Request,
    caller: Annotated[Caller, Depends(require_access(ACCESS))],
) -> DecisionResponse:
    services = get_services(request)
    access = _access_request(body, services)
    # A plain JSON response: the body is built from our own dataclasses, so re-validating it
    # against an inferred response model would only cost time on the hot path.
    return DecisionResponse(await _decide(services, access, caller.id))


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


class LeanDecisions:
    """``POST /v1/decisions`` without FastAPI's per-request machinery, same answers.

    An ASGI wrapper around the whole app, outside every middleware (see ``PiigateApp``).
    Through the middleware stack (error and exception middleware, body caps, an exit stack per
    request, two send wrappers, routing) and FastAPI's route (dependency solving, ``Request``
    building, double route resolution), the framework costs more CPU than the decision and its
    audit together. This wrapper claims only ``POST`` to the decisions path with a
    ``Content-Length`` within the body cap, and runs the route's contract itself (see
    ``_admitted``): the same authentication and access functions as the declared route's
    dependency, and the declared route's own body field for validation. It decides only when
    every step succeeds. Anything else -- a chunked or oversized body, a missing or wrong
    credential, a JWT or session cookie, malformed JSON, a validation error, a store failure
    while authenticating, a client disconnect -- goes through the app as usual with the body
    replayed, so every error response, status and header comes from the declared route and its
    middleware, in FastAPI's order (a malformed body before a missing credential). Nothing with
    an effect happens before that hand-off (authentication only fills the key cache).

    From the policy checks on, both paths run the same functions (``_access_request``,
    ``_decide``); an error raised there is answered by the app's own exception handler for it,
    with ``scope["route"]`` set to the declared route so the problem names it.
    """

    def __init__(
        self, app: ASGIApp, *, owner: FastAPI, declared: APIRoute, max_body_bytes: int
    ) -> None:
        self.app = app  # the app's middleware stack: everything not claimed here
        self.owner = owner
        self.declared = declared  # the FastAPI route (problem ``instance``, OpenAPI)
        body_field = declared.body_field
        assert body_field is not None, "the declared route takes a body"
        self.body_field = body_field
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = self._claimed_headers(scope)
        if headers is None:
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        body = await _read_body(receive, received)
        ready = None if body is None else await self._admitted(headers, body)
        if ready is None:
            await self.app(scope, _replay(received, receive), send)
            return
        services, caller, parsed = ready
        scope["app"] = self.owner
        scope["route"] = self.declared
        try:
            access = _access_request(parsed, services)
            answer = await _decide(services, access, caller.id)
        except Exception as error:
            await self._problem(scope, receive, send, error)
            return
        payload = to_json(answer)
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

    def _claimed_headers(self, scope: Scope) -> _Headers | None:
        """The headers the plain case reads, if this request is one to look at; else None."""
        # Served under a root path (behind a prefixing proxy), the app routes it.
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != PATH
            or scope.get("root_path")
        ):
            return None
        headers = _Headers()
        for name, value in scope["headers"]:
            if name == b"content-length":
                if headers.length is not None:
                    return None
                headers.length = value
            elif name == b"authorization" and headers.authorization is None:
                headers.authorization = value.decode("latin-1")
            elif name == b"content-type" and headers.content_type is None:
                headers.content_type = value.decode("latin-1")
        length = headers.length
        # Chunked or over the cap: the body limit middleware counts and answers (413).
        if length is None or not length.isdigit() or int(length) > self.max_body_bytes:
            return None
        return headers

    async def _admitted(
        self, headers: _Headers, body: bytes
    ) -> tuple[Services, Caller, DecisionRequestIn] | None:
        """Services, caller and body when the route's contract admits the request; else None.

        The declared route's steps: the bearer API key, the access check, the body as JSON and
        its validation. The first step that fails hands the request to the declared route, which
        runs them again and answers the error that comes first in FastAPI's order.
        """
        services = getattr(self.owner.state, "services", None)
        content_type, authorization = headers.content_type, headers.authorization
        if services is None or not body or authorization is None:
            return None
        if content_type is not None and not _is_plain_json(content_type):
            return None
        try:
            credential = bearer_credential(authorization)
            if not credential.startswith(API_KEY_PREFIX):
                return None  # an identity provider's token: the declared route validates it
            caller = ACCESS.check(await api_key_caller(services, credential))
            parsed = self._validated(body)
        except Exception:  # answered by the declared route, in its order
            return None
        return services, caller, parsed

    def _validated(self, body: bytes) -> DecisionRequestIn:
        """The body as the declared route validates it: Starlette's ``json.loads``, then the
        route's own body field (``validate_python(..., from_attributes=True)``)."""
        value, errors = self.body_field.validate(json.loads(body), loc=("body",))
        if errors:
            raise RequestValidationError(errors)
        assert isinstance(value, DecisionRequestIn)
        return value

    async def _problem(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        """Answer ``error`` with the app's handler for it, as its exception middleware would."""
        handlers = self.owner.exception_handlers
        handler = next((handlers[k] for k in type(error).__mro__ if k in handlers), None)
        if handler is None:
            raise error
        response = handler(Request(scope, receive), error)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


@dataclass(slots=True)
class _Headers:
    length: bytes | None = None
    authorization: str | None = None
    content_type: str | None = None


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


def _is_plain_json(content_type: str) -> bool:
    """``application/json`` with any parameters; rarer JSON types take the declared route."""
    return content_type.partition(";")[0].strip().lower() == "application/json"


def lean_decisions(app: FastAPI, stack: ASGIApp, *, max_body_bytes: int) -> LeanDecisions:
    """:class:`LeanDecisions` around ``stack``, the middleware stack of ``app``."""
    declared = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == PATH)
    return LeanDecisions(stack, owner=app, declared=declared, max_body_bytes=max_body_bytes)
