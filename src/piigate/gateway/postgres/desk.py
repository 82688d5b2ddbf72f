"""The PostgreSQL gateway's way to the engine and the factors of a node in this process.

A statement's decision is the engine's (``Engine.decide``, audited like any other); its
step-up is answered with the factors people already have: a push with number matching (sent at
once, when the challenge allows it and the person has a device), a TOTP code given with ``SET
piigate.otp``, or the step-up page at ``{public_url}/stepup/{id}``. An approval out of band is
collected once (``Verifier.collect``), as ``GET /v1/challenges/{id}/status`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from piigate.callers import Caller
from piigate.crypto.secret import Secret
from piigate.errors import PiigateError, Unauthorized
from piigate.gateway.http.gate import GatewayCallers
from piigate.identity.login import DB_CREDENTIAL_PREFIX
from piigate.model import (
    AccessRequest,
    ChallengeState,
    Decision,
    Method,
)
from piigate.stepup.verdicts import Proof

if TYPE_CHECKING:
    from piigate.api.services import Services

__all__ = ["Desk", "Waiting"]

log = structlog.get_logger("piigate.gateway.postgres")


@dataclass(frozen=True, slots=True)
class Waiting:
    """The state of a step-up being waited for: a grant token once approved."""

    state: ChallengeState
    grant: str | None = None


class Desk:
    def __init__(self, services: Services, public_url: str | None = None) -> None:
        self.services = services
        self.public_url = (public_url or services.settings.public_url).rstrip("/")

    async def caller(self, password: str, callers: GatewayCallers) -> Caller:
        """Who a client is, by the piigate credential it gives as its password: a database
        credential (``pgd_``: a session of a local user), an API key, or an IdP JWT."""
        if password.startswith(DB_CREDENTIAL_PREFIX):
            found = await self.services.logins.session_for(password[len(DB_CREDENTIAL_PREFIX) :])
            if found is None:
                raise Unauthorized("the database credential has expired or was ended")
            return Caller.person(found.subject, found.session)
        caller = await callers.caller(f"Bearer {password}")
        if caller is None:
            raise Unauthorized("a piigate credential is needed as the password")
        return caller

    async def scram(self, session_id: str) -> tuple[str, Caller] | None:
        """A database credential by its id: its SCRAM-SHA-256 verifier and its person."""
        found = await self.services.logins.database_session(session_id)
        if found is None:
            return None
        opened, verifier = found
        return verifier, Caller.person(opened.subject, opened.session)

    async def decide(self, request: AccessRequest, caller: Caller) -> Decision:
        return await self.services.engine.decide(request, caller=caller)

    def url(self, challenge_id: str) -> str:
        return f"{self.public_url}/stepup/{challenge_id}"

    async def push(self, challenge_id: str, caller: Caller) -> int | None:
        """Push the challenge to the person's devices: the number they must pick, or None when
        it cannot be pushed (not allowed, no device, too many pushes)."""
        try:
            sent = await self.services.push.send(challenge_id, caller=caller)
        except PiigateError as exc:
            log.info("pg_push_not_sent", challenge_id=challenge_id, reason=exc.code)
            return None
        return sent.number

    async def state(self, challenge_id: str, caller: Caller) -> Waiting:
        """Where the step-up stands; an approval's grant is handed out here, once."""
        challenge = await self.services.verifier.load(challenge_id, caller)
        if challenge.state is ChallengeState.APPROVED:
            issued = await self.services.verifier.collect(challenge)
            return Waiting(challenge.state, None if issued is None else issued.token)
        return Waiting(challenge.state)

    async def verify_code(self, challenge_id: str, code: str, caller: Caller) -> str:
        """A TOTP (or recovery) code for the challenge: the grant token, or the vague refusal
        (``PiigateError``) of ``Verifier.verify``."""
        method = Method.TOTP if code.strip().isdigit() else Method.RECOVERY
        issued = await self.services.verifier.verify(
            challenge_id, Proof(method.value, Secret(code.strip())), caller=caller
        )
        return issued.token
