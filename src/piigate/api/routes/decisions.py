"""``POST /v1/decisions`` (CONTRACT §4.2): apps and gateways ask, the engine answers.

The route's contract is defined once and both paths run it: the caller is authenticated by
``api.auth`` (``bearer_credential``, ``api_key_caller``) and admitted by ``ACCESS``; the body is
validated by the declared route's own body field; every error is answered by the app's handler
for its class (``api.problems``). The declared FastAPI route defines the API (OpenAPI,
validation, errors) and answers every request but the plain case: an API key with the
``decisions`` scope and a JSON body that validates, which gateways send thousands of times a
second. ``LeanDecisions`` runs that case in front of everything (``api/lean.py``): the same
steps without FastAPI's per-request machinery.

The request's ``context`` is the end user's, as the app or gateway saw it; its ``device_id``
may be a client's own id or the ``piigate_device`` cookie's value as the browser sent it, which
counts only when its signature holds (``api/devices.py``). When a person asks about themselves
(a session or bearer token, ``subject.id`` their own), what the body leaves out of the context
is taken from their request: address, user agent, device cookie or ``PIIGate-Device``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic_core import to_json

from piigate.api.auth import Access, require_access
from piigate.api.context import completed, own_context, resolved_context
from piigate.api.jsonbody import JsonRoute
from piigate.api.lean import Answer, LeanHeaders, LeanRoute, Work
from piigate.api.schemas import DecisionRequestIn, decision_json
from piigate.api.services import Services, get_services
from piigate.callers import Caller
from piigate.errors import BadRequest, ServiceUnavailable, step_up_header
from piigate.model import AccessRequest, Context, Outcome

__all__ = ["LeanDecisions", "lean_decisions", "router"]

# A body without a content type is read as JSON, as gateways send it (and as the lean path reads
# it); any other content type must still say JSON (``application/json`` or ``*/*+json``).
router = APIRouter(tags=["decisions"], strict_content_type=False, route_class=JsonRoute)

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
    own = None
    if not caller.is_app and access.subject.id == caller.id:
        own = await own_context(services, request)
    access = await _with_context(services, access, own)
    # A plain JSON response: the body is built from our own dataclasses, so re-validating it
    # against an inferred response model would only cost time on the hot path.
    return DecisionResponse(await _decide(services, access, caller))


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


async def _with_context(
    services: Services, access: AccessRequest, own: Context | None
) -> AccessRequest:
    """``access`` with its device resolved, and completed by ``own`` (the person's own request)
    when given."""
    context = await resolved_context(services, access.context)
    if own is not None:
        context = completed(context, own)
    if context == access.context:
        return access
    return dataclasses.replace(access, context=context)


async def _decide(services: Services, access: AccessRequest, caller: Caller) -> dict[str, Any]:
    """Decide (audited, naming ``caller``), count it, and build the response body."""
    started = time.perf_counter()
    decision = await services.engine.decide(access, caller=caller)
    services.metrics.observe(decision, time.perf_counter() - started)
    header = None
    if decision.outcome is Outcome.STEP_UP and decision.required is not None:
        header = step_up_header(decision.required.acr_values, decision.required.max_age)
    return decision_json(decision, header)


# -- the lean path ----------------------------------------------------------------------------


class LeanDecisions(LeanRoute):
    """The plain case (see ``api/lean.py``): an API key with the ``decisions`` scope and a JSON
    body that validates. The same authentication and access functions as the declared route's
    dependency, its own body field for validation; from the policy checks on, the same two
    functions (``_access_request``, ``_decide``)."""

    def match(self, path: str) -> dict[str, str] | None:
        return {} if path == PATH else None

    async def admitted(
        self, services: Services, headers: LeanHeaders, body: bytes, params: dict[str, str]
    ) -> Work | None:
        caller = await self.api_key(services, headers)
        if caller is None:
            return None
        caller = ACCESS.check(caller)
        parsed: DecisionRequestIn = self.validated(body)

        async def work() -> Answer:
            access = await _with_context(services, _access_request(parsed, services), None)
            return await _decide(services, access, caller), ()

        return work


def lean_decisions() -> LeanDecisions:
    """The decision route's :class:`LeanRoute`."""
    declared = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == PATH)
    return LeanDecisions(declared)
