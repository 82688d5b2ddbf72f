"""``POST /v1/challenges/{id}/verify`` (CONTRACT §4.3): a factor's proof in, a grant out.

The challenge's subject verifies for itself (console session or bearer token); the app that
asked for the decision may relay its user's proof with its API key. Every refusal is the same
401 ``factor_rejected`` problem (429 with ``Retry-After`` during a failure back-off); the exact
reason goes to the audit log only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from piigate.api.auth import Authenticated
from piigate.api.schemas import VerifyIn, grant_json
from piigate.api.services import get_services

router = APIRouter(tags=["challenges"])


@router.post("/v1/challenges/{challenge_id}/verify", summary="Prove a factor; get a grant")
async def verify_challenge(
    challenge_id: str,
    body: VerifyIn,
    request: Request,
    response: Response,
    caller: Authenticated,
) -> dict[str, Any]:
    issued = await get_services(request).verifier.verify(
        challenge_id, body.to_domain(), caller=caller
    )
    response.headers["Cache-Control"] = "no-store"
    return grant_json(issued)
