"""``POST /v1/decisions`` (CONTRACT §4.2): apps and gateways ask, the engine answers."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from piigate.api.auth import Principal, require_scope
from piigate.api.schemas import DecisionRequestIn, decision_json
from piigate.api.services import get_services
from piigate.errors import BadRequest, ServiceUnavailable, step_up_header
from piigate.model import Outcome

router = APIRouter(tags=["decisions"])

# Clock skew tolerated between the caller's IdP and this node (the JWT validator's leeway).
AUTH_TIME_SKEW = 60


@router.post(
    "/v1/decisions",
    summary="Decide whether a request may touch PII",
    response_class=JSONResponse,
    responses={200: {"description": "The decision (CONTRACT §4.2)"}},
)
async def create_decision(
    body: DecisionRequestIn,
    request: Request,
    principal: Annotated[Principal, Depends(require_scope("decisions"))],
) -> JSONResponse:
    services = get_services(request)
    compiled = services.policy.current
    if compiled is None:
        raise ServiceUnavailable("no policy is loaded")
    auth_time = body.session.auth_time
    if auth_time is not None and auth_time > services.clock.now().timestamp() + AUTH_TIME_SKEW:
        # It would look fresh for as long as it stays in the future (as for IdP tokens).
        raise BadRequest("session.auth_time: in the future", field="session.auth_time")
    access = body.to_domain(compiled)
    started = time.perf_counter()
    decision = await services.engine.decide(access, requested_by=principal.id)
    services.metrics.observe(decision, time.perf_counter() - started)
    header = None
    if decision.outcome is Outcome.STEP_UP and decision.required is not None:
        header = step_up_header(decision.required.acr_values, decision.required.max_age)
    # A plain JSON response: the body is built from our own dataclasses, so re-validating it
    # against an inferred response model would only cost time on the hot path.
    return JSONResponse(decision_json(decision, header))
