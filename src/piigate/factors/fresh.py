"""A person's own recent step-up: what changing one's factors and approving another's step-up
ask for, and the challenge that gives it.

Both operations need a grant (``PIIGate-Grant``) that is the person's own: its audience is
:func:`~piigate.model.person_audience` of the caller, so a grant an app obtained for its own
decision is that app's and changes nothing here. It must also be unbound, of at least the level
the operation names, and proven within :data:`FRESH_GRANT_SECONDS`. The levels are not decided
here: each operation's own rule gives them (``factors.enrollment``, ``factors.approval``).

Without such a grant the refusal (401 ``insufficient_user_authentication``) carries a new
challenge for the person at that level, which a client answers with ``/verify`` (or SMS, push,
WebAuthn) to get the grant. The challenge can be answered by the policy's factors that prove the
level, never ``approval`` (the proof is the person's own). It is stored and ``challenge_created``
audited in the same group commit, as a decision's challenge and its event are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from piigate.callers import person_audience
from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.errors import ServiceUnavailable, StepUpRequired
from piigate.ids import new_id
from piigate.model import (
    Action,
    Challenge,
    Grant,
    Method,
    Requirement,
    Resource,
)
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.ports import AuditRecorder
from piigate.stepup.grants import (
    GrantRejected,
    GrantRejection,
    KeyringGrantVerifier,
    verify_grant,
)
from piigate.stepup.ports import ChallengeStore

__all__ = ["FRESH_GRANT_SECONDS", "FreshGrants", "Purpose"]

# How recently the grant that authorises a factor change or an approval must have been proven.
FRESH_GRANT_SECONDS = 300


class Purpose(StrEnum):
    """What a person's own step-up is for; its challenge's ``resource.type``."""

    MANAGE_FACTORS = "manage_factors"  # add, replace or remove the person's factors
    APPROVE = "approve"  # approve or deny another's step-up (``resource.id``: its challenge)


class FreshGrants:
    def __init__(
        self,
        *,
        keyring: Keyring,
        issuer: str,
        challenges: ChallengeStore,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer  # of grant tokens
        self.challenges = challenges
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.ids = ids

    async def require(
        self,
        token: str | None,
        *,
        subject_id: str,
        level: str,
        now: datetime,
        purpose: Purpose = Purpose.MANAGE_FACTORS,
        about: str | None = None,
        detail: str = "changing factors needs a recent step-up (PIIGate-Grant)",
    ) -> Grant:
        """The grant ``token`` carries, if it is ``subject_id``'s own, unbound, at least
        ``level`` and proven within :data:`FRESH_GRANT_SECONDS`. Otherwise ``StepUpRequired``
        carrying a new challenge for ``purpose`` (``about``: what it names); a token that is
        no grant at all is a ``GrantRejected``."""
        compiled = self._compiled()
        if token:
            # Signed on a node that rotated the keys since this one loaded them: learn them.
            await KeyringGrantVerifier(self.keyring, self.issuer).learn([token])
        grant = self._verified(token, subject_id=subject_id, now=now) if token else None
        if grant is not None and _fresh(grant, compiled, subject_id, level, now):
            return grant
        challenge = await self.open(subject_id, level=level, purpose=purpose, about=about)
        raise StepUpRequired(
            acr_values=compiled.acr_values(level) if level in compiled.levels else (),
            max_age=FRESH_GRANT_SECONDS,
            detail=detail,
            challenge=challenge,
        )

    async def open(
        self, subject_id: str, *, level: str, purpose: Purpose, about: str | None = None
    ) -> Challenge | None:
        """A new challenge for ``subject_id`` to prove ``level``, stored and audited, whose
        grant :meth:`require` accepts; None when no factor of the policy proves ``level``."""
        compiled = self._compiled()
        if level not in compiled.ranks:
            return None
        methods = tuple(m for m in compiled.level_methods[level] if m != Method.APPROVAL)
        if not methods:
            return None
        settings = compiled.policy.stepup
        now = self.clock.now()
        challenge = Challenge(
            id=self.ids("chl"),
            subject_id=subject_id,
            requirement=Requirement(
                level=level,
                acr_values=compiled.acr_values(level),
                max_age=FRESH_GRANT_SECONDS,
                methods=methods,
            ),
            action=Action.UPDATE,
            pii=frozenset(),
            resource=Resource(purpose.value, about),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.challenge_ttl),
            audience=person_audience(subject_id),
            max_attempts=settings.max_attempts,
        )
        data: dict[str, object] = {
            "challenge_id": challenge.id,
            "purpose": purpose.value,
            "level": level,
            "max_age": FRESH_GRANT_SECONDS,
            "methods": list(methods),
        }
        if about is not None:
            data["about"] = about
        # Queued together: with the audit log as the store's writer, one group commit.
        await asyncio.gather(
            self.challenges.create(challenge),
            self.audit.record("challenge_created", subject_id=subject_id, data=data),
        )
        return challenge

    def _verified(self, token: str, *, subject_id: str, now: datetime) -> Grant | None:
        """The grant ``token`` carries; None once it has expired (a new step-up is what is
        needed then, as for a stale one). Any other rejection is a 401 ``grant_rejected``."""
        try:
            return verify_grant(
                token,
                keyring=self.keyring,
                issuer=self.issuer,
                now=now,
                expected_subject=subject_id,
            )
        except GrantRejected as rejected:
            if rejected.reason is GrantRejection.EXPIRED:
                return None
            raise

    def _compiled(self) -> CompiledPolicy:
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        return compiled


def _fresh(
    grant: Grant, compiled: CompiledPolicy, subject_id: str, level: str, now: datetime
) -> bool:
    """The person's own unbound grant, at least ``level``, proven recently enough."""
    rank = compiled.ranks.get(grant.level)
    return (
        grant.binding is None  # a bound grant is for one other request
        and grant.audience == person_audience(subject_id)
        and rank is not None
        and level in compiled.ranks
        and rank >= compiled.ranks[level]
        and (now - grant.auth_time).total_seconds() <= FRESH_GRANT_SECONDS
    )
