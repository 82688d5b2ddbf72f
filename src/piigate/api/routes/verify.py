"""``POST /v1/challenges/{id}/verify`` (CONTRACT §4.3): a factor's proof in, a grant out.

The challenge's subject verifies for itself (console session or bearer token); the app that
asked for the decision may relay its user's proof with its API key. Every refusal is the same
401 ``factor_rejected`` problem (429 with ``Retry-After`` during a failure back-off); the exact
reason goes to the audit log only.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from piigate.api.auth import Authenticated
from piigate.api.jsonbody import JsonRoute
from piigate.api.lean import Answer, LeanHeaders, LeanRoute, Work
from piigate.api.schemas import VerifyIn, grant_json
from piigate.api.services import Services, get_services

__all__ = ["LeanVerify", "lean_verify", "router"]

router = APIRouter(tags=["challenges"], route_class=JsonRoute)

PATH = "/v1/challenges/{challenge_id}/verify"
# The path segment the declared route would match (Starlette's ``{param}``: no slash).
_LEAN_PATH = re.compile(r"/v1/challenges/([^/]+)/verify")
_NO_STORE = (b"cache-control", b"no-store")


@router.post(PATH, summary="Prove a factor; get a grant")
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
            issued = await services.verifier.verify(
                params["challenge_id"], proof.to_domain(), caller=caller
            )
            return grant_json(issued), (_NO_STORE,)

        return work


def lean_verify() -> LeanVerify:
    """The verification route's :class:`LeanRoute`."""
    declared = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == PATH)
    return LeanVerify(declared)
