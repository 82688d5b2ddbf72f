"""WebAuthn over HTTP: ``POST /v1/factors/webauthn/options``, ``POST /v1/factors/webauthn``
(CONTRACT §4.4) and ``GET /v1/challenges/{id}/webauthn`` (§4.3).

Options answers are ``{"publicKey": {...}, "ceremony": "cer_wa_...", "expires_at": ...}``:
``publicKey`` is the W3C JSON form (binary fields base64url) for
``navigator.credentials.create/get({publicKey})`` once its ``challenge``, ``user.id`` and
credential ids are decoded to ArrayBuffers (or ``PublicKeyCredential.parse*OptionsFromJSON``).
The response needs no ceremony id: the challenge inside it names its ceremony. The assertion is
then sent as ``POST /v1/challenges/{id}/verify`` ``{"method": "webauthn", "credential": {...}}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from piigate.api.auth import ChallengeCaller, Person, presented_grant
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import WebAuthnRegisterIn, factor_json
from piigate.api.services import get_services
from piigate.factors.webauthn.ceremony import CeremonyOptions

router = APIRouter(tags=["webauthn"], route_class=JsonRoute)


def _options(issued: CeremonyOptions, response: Response) -> dict[str, Any]:
    # A challenge is single use; no cache should keep or replay one.
    response.headers["Cache-Control"] = "no-store"
    return {
        "publicKey": issued.public_key,
        "ceremony": issued.ceremony_id,
        "expires_at": int(issued.expires_at.timestamp()),
    }


@router.post(
    "/v1/factors/webauthn/options",
    tags=["factors"],
    summary="Creation options for registering a security key or passkey",
)
async def webauthn_registration_options(
    request: Request, response: Response, user: Person
) -> dict[str, Any]:
    """Once the caller has an active factor, a recent grant (``PIIGate-Grant``) is needed."""
    issued = await get_services(request).webauthn.registration_options(
        user.id, grant=presented_grant(request)
    )
    return _options(issued, response)


@router.post(
    "/v1/factors/webauthn",
    status_code=201,
    tags=["factors"],
    summary="Register the credential created with the options; it is active at once",
)
async def register_webauthn(
    body: WebAuthnRegisterIn, request: Request, user: Person
) -> dict[str, Any]:
    factor = await get_services(request).webauthn.register(
        user.id, body.credential, label=body.label, grant=presented_grant(request)
    )
    return factor_json(factor)


@router.get(
    "/v1/challenges/{challenge_id}/webauthn",
    tags=["challenges"],
    summary="Request options whose challenge is bound to this challenge (and its request)",
)
async def webauthn_authentication_options(
    challenge_id: str,
    request: Request,
    response: Response,
    caller: ChallengeCaller,
) -> dict[str, Any]:
    """For the challenge's subject, or the app that asked for the decision (its API key) to
    relay to its user's browser; anyone else gets 404."""
    services = get_services(request)
    challenge = await services.verifier.load(challenge_id, caller)
    issued = await services.webauthn.authentication_options(challenge)
    return _options(issued, response)
