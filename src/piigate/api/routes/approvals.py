"""``/v1/approvals``: step-ups that another person approves (method ``approval``).

For service accounts and AI agents: their decision's challenge allows ``approval``; a user
holding one of the policy's approver roles lists it here and approves or denies it; the agent
collects its grant once from ``GET /v1/challenges/{id}/status``. See ``factors.approval`` for
who may approve.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from piigate.api.auth import Person, presented_grant
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import challenge_json
from piigate.api.services import get_services

router = APIRouter(tags=["approvals"], route_class=JsonRoute)


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]


@router.get("/v1/approvals", summary="Step-ups waiting for your approval")
async def list_approvals(request: Request, person: Person) -> dict[str, Any]:
    pending = await get_services(request).approvals.pending_for(person.subject)
    return {"approvals": [challenge_json(c, include_state=True) for c in pending]}


@router.post("/v1/approvals/{challenge_id}", summary="Approve or deny another's step-up")
async def decide_approval(
    challenge_id: str, body: ApprovalIn, request: Request, person: Person
) -> dict[str, Any]:
    challenge = await get_services(request).approvals.decide(
        challenge_id,
        person.subject,
        person.session,
        approve=body.decision == "approve",
        grant=presented_grant(request),
    )
    return {"id": challenge.id, "state": challenge.state.value}
