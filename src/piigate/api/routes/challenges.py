"""``/v1/challenges`` (CONTRACT §4.3): what a step-up is for, and a person's own step-up.

``GET /v1/challenges/{id}`` and ``/status`` are readable by the challenge's subject, by the app
that asked for the decision, and by admins — anyone else gets 404, so challenge ids cannot be
probed. ``POST /v1/challenges`` opens the caller's own step-up (a person: session cookie or
bearer JWT, never an API key) for changing their factors or approving another's step-up, at the
level that operation asks for (``factors.fresh``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field, ValidationInfo, field_validator

from piigate.api.auth import ChallengeCaller, Person
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import challenge_json, grant_json
from piigate.api.services import Services, get_services
from piigate.callers import Caller
from piigate.decision_request import In
from piigate.errors import NotFound
from piigate.factors.fresh import Purpose
from piigate.ids import MAX_ID_LENGTH
from piigate.model import Challenge, ChallengeState

__all__ = ["challenge_view", "router", "visible_challenge"]

router = APIRouter(tags=["challenges"], route_class=JsonRoute)


class StepUpIn(In):
    """``POST /v1/challenges``: what the caller's own step-up is for."""

    purpose: Purpose
    # The step-up to approve (``purpose: approve`` only).
    approval: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = Field(
        default=None, validate_default=True
    )

    @field_validator("approval")
    @classmethod
    def _with_approve_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        purpose = info.data.get("purpose")
        if purpose is Purpose.APPROVE and value is None:
            raise ValueError("required with purpose 'approve'")
        if purpose is Purpose.MANAGE_FACTORS and value is not None:
            raise ValueError("only with purpose 'approve'")
        return value


@router.post("/v1/challenges", status_code=201, summary="Open a step-up for yourself")
async def create_challenge(
    body: StepUpIn,
    request: Request,
    response: Response,
    person: Person,
) -> dict[str, Any]:
    """``{"purpose": "manage_factors"}`` or ``{"purpose": "approve", "approval": "chl_..."}``:
    a challenge for the caller, answered with ``/v1/challenges/{id}/verify`` (or by SMS, push,
    WebAuthn); its grant goes in ``PIIGate-Grant`` of that operation."""
    services = get_services(request)
    if body.purpose is Purpose.APPROVE and body.approval is not None:
        challenge = await services.approvals.step_up(body.approval, person.subject, person.session)
    else:
        challenge = await services.enrollment.step_up(person.id)
    response.headers["Location"] = f"/v1/challenges/{challenge.id}"
    return challenge_json(challenge, include_state=True)


async def visible_challenge(services: Services, challenge_id: str, caller: Caller) -> Challenge:
    """The challenge, if ``caller`` may read it (its subject, the app that asked, an admin),
    shown ``expired`` once its time is up; ``NotFound`` otherwise, as for an unknown id."""
    if len(challenge_id) > 64:
        raise NotFound("no such challenge")
    challenge = await services.engine.challenges.get(challenge_id)
    if challenge is None or not _may_read(challenge, caller):
        raise NotFound("no such challenge")
    if challenge.state is ChallengeState.PENDING and challenge.expires_at <= services.clock.now():
        challenge = dataclasses.replace(challenge, state=ChallengeState.EXPIRED)
    return challenge


def _may_read(challenge: Challenge, caller: Caller) -> bool:
    return "admin" in caller.roles or caller.may_answer(challenge)


@router.get("/v1/challenges/{challenge_id}", summary="What a challenge asks to approve")
async def get_challenge(
    challenge_id: str,
    request: Request,
    caller: ChallengeCaller,
) -> dict[str, Any]:
    services = get_services(request)
    challenge = await visible_challenge(services, challenge_id, caller)
    return await challenge_view(services, challenge, caller)


async def challenge_view(
    services: Services, challenge: Challenge, caller: Caller
) -> dict[str, Any]:
    """What ``GET /v1/challenges/{id}`` says of a challenge ``caller`` may read (the console's
    step-up page shows the same): never a PII value; the push number only to whoever may
    answer it."""
    body = challenge_json(challenge, include_state=True)
    if caller.may_answer(challenge):
        # Number matching: the number the user must type on their device (none sent to it).
        shown = await services.push.shown(challenge)
        body["push"] = (
            None
            if shown is None
            else {"number": shown.number, "expires_at": int(shown.expires_at.timestamp())}
        )
    return body


@router.get("/v1/challenges/{challenge_id}/status", summary="pending | approved | denied | expired")
async def get_challenge_status(
    challenge_id: str,
    request: Request,
    response: Response,
    caller: ChallengeCaller,
) -> dict[str, Any]:
    """The state; after an out-of-band approval (push, another person) the first read by the
    challenge's subject or the app that asked also carries the grant — once, never again."""
    services = get_services(request)
    challenge = await visible_challenge(services, challenge_id, caller)
    body: dict[str, Any] = {"id": challenge.id, "state": challenge.state.value}
    if caller.may_answer(challenge):
        issued = await services.verifier.collect(challenge)
        if issued is not None:
            response.headers["Cache-Control"] = "no-store"
            body.update(grant_json(issued))
    return body
