"""SMS codes over HTTP: ``POST /v1/challenges/{id}/sms`` (CONTRACT §4.3) and
``POST /v1/factors/sms``, ``POST /v1/factors/sms/{id}/confirm`` (§4.4).

The number comes in once, at enrollment, and never goes out again: answers carry only its hint
(``+1 •••-•••-••00``). Verifying a code is ``POST /v1/challenges/{id}/verify`` with
``{"method": "sms", "code": "..."}``, like every factor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from piigate.api.auth import ChallengeCaller, Person, presented_grant
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import CodeIn, SmsEnrollIn, SmsSendIn, factor_json
from piigate.api.services import get_services
from piigate.crypto.secret import Secret
from piigate.factors.sms.ceremony import SmsCeremony
from piigate.factors.sms.dispatch import SentCode
from piigate.model import Method

router = APIRouter(tags=["sms"], route_class=JsonRoute)

# NIST SP 800-63B-4 §3.1.3.3: a restricted authenticator comes with notice of its risks and an
# alternative; the enrollment answer carries the notice when the policy declares SMS restricted.
RESTRICTED_NOTICE = (
    "SMS codes can be intercepted (SIM swap, number porting, network attacks). "
    "Add an authenticator app or a security key as well."
)


def _sms(request: Request) -> SmsCeremony:
    return get_services(request).sms


def _sent(sent: SentCode) -> dict[str, Any]:
    return {"sent": True, "to": sent.hint, "expires_at": int(sent.expires_at.timestamp())}


@router.post(
    "/v1/challenges/{challenge_id}/sms",
    status_code=202,
    tags=["challenges"],
    summary="Send the challenge's SMS code",
)
async def send_challenge_code(
    challenge_id: str,
    request: Request,
    caller: ChallengeCaller,
    body: SmsSendIn | None = None,
) -> dict[str, Any]:
    """The challenge's subject, or the app that asked for the decision (its API key), may ask
    for the code. A new code voids the previous one; the failure count stays."""
    sent = await _sms(request).send(
        challenge_id, caller=caller, factor_id=body.factor_id if body else None
    )
    return _sent(sent)


@router.post(
    "/v1/factors/sms",
    status_code=201,
    tags=["factors"],
    summary="Start an SMS enrollment: a code is sent to the phone",
)
async def enroll_sms(body: SmsEnrollIn, request: Request, user: Person) -> dict[str, Any]:
    sent = await _sms(request).enroll(
        user.id, body.phone, region=body.region, label=body.label, grant=presented_grant(request)
    )
    answer = {"id": sent.factor.id, "state": sent.factor.state, **_sent(sent)}
    compiled = get_services(request).policy.current
    settings = compiled.policy.factors.get(Method.SMS) if compiled else None
    if settings is not None and settings.restricted:
        answer["restricted"] = True
        answer["notice"] = RESTRICTED_NOTICE
    return answer


@router.post(
    "/v1/factors/sms/{factor_id}/confirm",
    tags=["factors"],
    summary="Activate an SMS factor with the code it received",
)
async def confirm_sms(
    factor_id: str, body: CodeIn, request: Request, user: Person
) -> dict[str, Any]:
    factor = await _sms(request).confirm(user.id, factor_id, Secret(body.code))
    return factor_json(factor)
