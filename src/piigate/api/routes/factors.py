"""``/v1/factors`` (CONTRACT §4.4): the caller's own TOTP and recovery-code factors.

Only people have factors: the caller is a console session or an IdP bearer token, never an API
key. Responses that carry a secret (the TOTP secret and its QR code, recovery codes) are marked
``Cache-Control: no-store`` and are the only place a secret ever appears. Changing factors once
one is active needs a recent grant in ``PIIGate-Grant`` (see ``factors.enrollment``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from piigate.api.auth import Person, presented_grant
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import CodeIn, TotpEnrollIn, factor_json
from piigate.api.services import get_services
from piigate.crypto.secret import Secret
from piigate.factors.enrollment import FactorEnrollment

router = APIRouter(tags=["factors"], route_class=JsonRoute)

NO_STORE = "no-store"


def _enrollment(request: Request) -> FactorEnrollment:
    return get_services(request).enrollment


def _grant(request: Request) -> str | None:
    return presented_grant(request)


@router.get("/v1/factors", summary="The caller's factors (never their secrets)")
async def list_factors(request: Request, user: Person) -> dict[str, Any]:
    factors = await _enrollment(request).list(user.id)
    return {"factors": [factor_json(f) for f in factors]}


@router.post("/v1/factors/totp", status_code=201, summary="Start a TOTP enrollment")
async def enroll_totp(
    request: Request, response: Response, user: Person, body: TotpEnrollIn | None = None
) -> dict[str, Any]:
    started = await _enrollment(request).start_totp(
        user.id, label=body.label if body else "", grant=_grant(request)
    )
    response.headers["Cache-Control"] = NO_STORE
    return {
        "id": started.factor.id,
        "secret": started.secret.reveal(),
        "otpauth_uri": started.uri.reveal(),
        "qr_svg": started.qr_svg,
        "state": started.factor.state,
    }


@router.post(
    "/v1/factors/totp/{factor_id}/confirm", summary="Activate a TOTP factor with its first code"
)
async def confirm_totp(
    factor_id: str, body: CodeIn, request: Request, user: Person
) -> dict[str, Any]:
    factor = await _enrollment(request).confirm_totp(user.id, factor_id, Secret(body.code))
    return factor_json(factor)


@router.post(
    "/v1/factors/recovery", status_code=201, summary="New recovery codes (replacing the old)"
)
async def new_recovery_codes(request: Request, response: Response, user: Person) -> dict[str, Any]:
    created = await _enrollment(request).new_recovery_codes(user.id, grant=_grant(request))
    response.headers["Cache-Control"] = NO_STORE
    return {"id": created.factor.id, "codes": [code.reveal() for code in created.codes]}


@router.delete("/v1/factors/{factor_id}", status_code=204, summary="Remove a factor")
async def delete_factor(factor_id: str, request: Request, user: Person) -> Response:
    await _enrollment(request).remove(user.id, factor_id, grant=_grant(request))
    return Response(status_code=204)
