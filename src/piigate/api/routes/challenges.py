"""``GET /v1/challenges/{id}`` and ``/status`` (CONTRACT §4.3): what a step-up is for.

Readable by the challenge's subject, by the app that asked for the decision, and by admins —
anyone else gets 404, so challenge ids cannot be probed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request, Response

from piigate.api.auth import Authenticated
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import challenge_json, grant_json
from piigate.api.services import Services, get_services
from piigate.errors import NotFound
from piigate.model import Caller, Challenge, ChallengeState

router = APIRouter(tags=["challenges"], route_class=JsonRoute)


async def _visible_challenge(services: Services, challenge_id: str, caller: Caller) -> Challenge:
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
    caller: Authenticated,
) -> dict[str, Any]:
    services = get_services(request)
    challenge = await _visible_challenge(services, challenge_id, caller)
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
    caller: Authenticated,
) -> dict[str, Any]:
    """The state; after an out-of-band approval (push, another person) the first read by the
    challenge's subject or the app that asked also carries the grant — once, never again."""
    services = get_services(request)
    challenge = await _visible_challenge(services, challenge_id, caller)
    body: dict[str, Any] = {"id": challenge.id, "state": challenge.state.value}
    if caller.may_answer(challenge):
        issued = await services.verifier.collect(challenge)
        if issued is not None:
            response.headers["Cache-Control"] = "no-store"
            body.update(grant_json(issued))
    return body
