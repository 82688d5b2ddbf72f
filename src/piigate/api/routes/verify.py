"""``POST /v1/challenges/{id}/verify`` (CONTRACT §4.3): a factor's proof in, a grant out.

The challenge's subject verifies for itself (console session or bearer token); the app that
asked for the decision may relay its user's proof with its API key. Every refusal is the same
401 ``factor_rejected`` problem (429 with ``Retry-After`` during a failure back-off); the exact
reason goes to the audit log only.

The risk engine is told of both (``api/context.py``): a success as verified activity of the
challenge's subject, from the verifying request's own context when the subject verifies for
itself, or from the ``context`` the app relays (a device missing from either is the
challenge's); a refused proof as a failed step-up. A person's verification also renews the
device cookie (``api/devices.py``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from piigate.api.auth import ChallengeCaller
from piigate.api.context import (
    completed,
    own_context,
    resolved_context,
    tell_failed_stepup,
    tell_verified,
)
from piigate.api.jsonbody import JsonRoute
from piigate.api.lean import Answer, LeanHeaders, LeanRoute, Work
from piigate.api.schemas import VerifyIn, grant_json
from piigate.api.services import Services, get_services
from piigate.callers import Caller
from piigate.errors import BadRequest
from piigate.model import Context
from piigate.stepup.verdicts import IssuedGrant, VerificationFailure, VerificationRejected

__all__ = ["LeanVerify", "lean_verify", "renew_device", "router", "verify_own"]

router = APIRouter(tags=["challenges"], route_class=JsonRoute)

PATH = "/v1/challenges/{challenge_id}/verify"
# The path segment the declared route would match (Starlette's ``{param}``: no slash).
_LEAN_PATH = re.compile(r"/v1/challenges/([^/]+)/verify")
_NO_STORE = (b"cache-control", b"no-store")
# Refusals that say nothing of the proof (the challenge could not be answered any more): not
# a failed step-up.
_NOT_A_PROOF = frozenset({VerificationFailure.EXPIRED, VerificationFailure.NOT_PENDING})


@router.post(PATH, summary="Prove a factor; get a grant")
async def verify_challenge(
    challenge_id: str,
    body: VerifyIn,
    request: Request,
    response: Response,
    caller: ChallengeCaller,
) -> dict[str, Any]:
    services = get_services(request)
    if caller.is_app:
        issued = await _verify(services, challenge_id, body, caller, None)
    else:
        issued, device = await verify_own(services, request, challenge_id, body, caller)
        renew_device(services, response, device)
    response.headers["Cache-Control"] = "no-store"
    return grant_json(issued)


async def verify_own(
    services: Services, request: Request, challenge_id: str, body: VerifyIn, caller: Caller
) -> tuple[IssuedGrant, str | None]:
    """A person's own proof (``caller`` is the challenge's subject, with a session, a token or
    a login ticket): the grant, and the device whose cookie to renew (:func:`renew_device`).
    The console's step-up page verifies through here too."""
    if body.context is not None:
        raise BadRequest(
            "context: only an app relays its user's context; yours is this request's",
            field="context",
        )
    own = await own_context(services, request)
    issued = await _verify(services, challenge_id, body, caller, own)
    return issued, own.device_id or issued.grant.device_id


def renew_device(services: Services, response: Response, device: str | None) -> None:
    """Give the browser that verified its device cookie again (``api/devices.py``)."""
    secure = services.settings.public_url.startswith("https://")
    services.devices.set_cookie(response, device, secure=secure)


async def _verify(
    services: Services, challenge_id: str, body: VerifyIn, caller: Caller, own: Context | None
) -> IssuedGrant:
    """The grant of a verified proof, the risk engine told either way (see the module's doc):
    ``own`` is the verifying person's own context (None: an app's, relayed in the body)."""
    try:
        issued = await services.verifier.verify(challenge_id, body.to_domain(), caller=caller)
    except VerificationRejected as refused:
        if refused.reason not in _NOT_A_PROOF:
            challenge = await services.challenges.get(challenge_id)
            if challenge is not None:
                await tell_failed_stepup(services, challenge.subject_id)
        raise
    if own is None:
        relayed = body.context.to_domain() if body.context is not None else Context()
        own = await resolved_context(services, relayed)
    context = completed(own, Context(device_id=issued.grant.device_id))
    await tell_verified(services, issued.grant.subject_id, context)
    return issued


class LeanVerify(LeanRoute):
    """The plain case (see ``api/lean.py``): an app relaying its user's proof with its API key,
    a JSON body that validates. The Verifier decides whether that app may answer the challenge,
    as on the declared route."""

    def match(self, path: str) -> dict[str, str] | None:
        found = _LEAN_PATH.fullmatch(path)
        return None if found is None else {"challenge_id": found.group(1)}

    async def admitted(
        self, services: Services, headers: LeanHeaders, body: bytes, params: dict[str, str]
    ) -> Work | None:
        caller = await self.api_key(services, headers)
        if caller is None:
            return None
        proof: VerifyIn = self.validated(body)

        async def work() -> Answer:
            issued = await _verify(services, params["challenge_id"], proof, caller, None)
            return grant_json(issued), (_NO_STORE,)

        return work


def lean_verify() -> LeanVerify:
    """The verification route's :class:`LeanRoute`."""
    declared = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == PATH)
    return LeanVerify(declared)
