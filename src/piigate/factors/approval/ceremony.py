"""Approval by another person (method ``approval``): for service accounts and AI agents that
cannot step up themselves.

A rule lets a challenge be answered this way with ``methods: [approval]`` (or by leaving
``methods`` open while the policy declares ``factors.approval``). The people who may answer it
hold one of the roles in ``factors.approval.approvers``. An approver:

- is a person (console session or IdP token), never an API key;
- is neither the challenge's subject nor the app that asked for the decision — the requester
  never approves itself;
- proves the approval's level on their own account: a session of at least that level, or else a
  fresh grant of their own (``PIIGate-Grant``) — an approver's stolen low-level session approves
  nothing. Without one the 401 carries a challenge for the approver's own step-up, which
  :meth:`Approvals.step_up` also opens on request.

Approving moves the challenge to ``approved`` by compare-and-set (of two approvers, one wins) and
records who approved; the requester collects its grant once from ``GET .../status``. A denial
closes the challenge. Both are audited with the approver's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from piigate.clock import Clock
from piigate.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from piigate.factors.fresh import FreshGrants, Purpose
from piigate.ids import MAX_ID_LENGTH
from piigate.model import Challenge, ChallengeState, Method, SessionAuth, Subject
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.stepup.verdicts import VerificationFailure
from piigate.stepup.verification import Verifier

__all__ = ["APPROVAL", "Approvals", "PendingChallenges"]

APPROVAL = Method.APPROVAL.value
# How far back to look for pending challenges (a challenge lives minutes, not days).
_LOOKBACK = timedelta(days=1)


class PendingChallenges(Protocol):
    """What :class:`Approvals` reads challenges from (``store.ports.SqlChallenges``)."""

    async def get(self, challenge_id: str) -> Challenge | None: ...

    async def pending(self, *, created_after: datetime, limit: int = 200) -> list[Challenge]: ...


class Approvals:
    def __init__(
        self,
        *,
        verifier: Verifier,
        challenges: PendingChallenges,
        fresh: FreshGrants,
        policy: PolicyHolder,
        clock: Clock,
    ) -> None:
        self.verifier = verifier
        self.challenges = challenges
        self.fresh = fresh  # the approver's own recent step-up
        self.policy = policy
        self.clock = clock

    async def pending_for(self, approver: Subject) -> Sequence[Challenge]:
        """The pending, unexpired challenges ``approver`` may answer, newest first."""
        settings = self._settings()
        if settings is None or not (approver.roles & set(settings.approvers)):
            return []
        now = self.clock.now()
        found = await self.challenges.pending(created_after=now - _LOOKBACK)
        return [
            c
            for c in found
            if c.expires_at > now and APPROVAL in c.requirement.methods and _other(c, approver)
        ]

    async def decide(
        self,
        challenge_id: str,
        approver: Subject,
        session: SessionAuth,
        *,
        approve: bool,
        grant: str | None = None,
    ) -> Challenge:
        """Approve or deny ``challenge_id`` as ``approver``; the challenge as it now stands.

        Raises ``NotFound`` (unknown, or not one this approver may see), ``Forbidden`` (the
        requester itself), ``StepUpRequired`` (the approver's own proof is too weak or old) and
        ``Conflict`` (no longer pending).
        """
        challenge, settings = await self._answerable(challenge_id, approver)
        if not self._session_suffices(session, settings):
            await self.fresh.require(
                grant,
                subject_id=approver.id,
                level=settings.level,
                now=self.clock.now(),
                purpose=Purpose.APPROVE,
                about=challenge.id,
                detail="approving a step-up needs your own recent step-up (PIIGate-Grant)",
            )
        if approve:
            done = await self.verifier.approve(challenge, APPROVAL, approver=approver.id)
        else:
            done = await self.verifier.deny(
                challenge, APPROVAL, VerificationFailure.DENIED, approver=approver.id
            )
        if not done:
            raise Conflict("the challenge is no longer pending")
        current = await self.challenges.get(challenge.id)
        if current is None:  # pragma: no cover - deleted under our feet
            raise NotFound("no such challenge")
        return current

    async def step_up(
        self, challenge_id: str, approver: Subject, session: SessionAuth
    ) -> Challenge:
        """``POST /v1/challenges`` for ``approve``: the approver's own challenge at the level
        approving ``challenge_id`` asks for. The same refusals as :meth:`decide`, and 409 when
        the approver's session already proves that level (no grant is needed)."""
        challenge, settings = await self._answerable(challenge_id, approver)
        if self._session_suffices(session, settings):
            raise Conflict(f"your session already proves {settings.level}: no step-up is needed")
        opened = await self.fresh.open(
            approver.id, level=settings.level, purpose=Purpose.APPROVE, about=challenge.id
        )
        if opened is None:
            raise Conflict(f"no factor of the policy can prove {settings.level}")
        return opened

    async def _answerable(
        self, challenge_id: str, approver: Subject
    ) -> tuple[Challenge, FactorSettings]:
        """The pending challenge ``approver`` may answer, and the approval factor's settings."""
        settings = self._settings()
        if settings is None or not (approver.roles & set(settings.approvers)):
            raise NotFound("no such challenge")
        challenge = (
            await self.challenges.get(challenge_id) if len(challenge_id) <= MAX_ID_LENGTH else None
        )
        if challenge is None or APPROVAL not in challenge.requirement.methods:
            raise NotFound("no such challenge")
        if not _other(challenge, approver):
            raise Forbidden("a step-up cannot be approved by the one who asked for it")
        now = self.clock.now()
        if challenge.state is not ChallengeState.PENDING or challenge.expires_at <= now:
            raise Conflict("the challenge is no longer pending")
        return challenge, settings

    def _session_suffices(self, session: SessionAuth, settings: FactorSettings) -> bool:
        """The approver's session itself proves the approval's level."""
        compiled = self._compiled()
        needed = compiled.ranks.get(settings.level)
        have = compiled.ranks.get(session.level) if session.level else None
        return needed is not None and have is not None and have >= needed

    def _settings(self) -> FactorSettings | None:
        return self._compiled().policy.factors.get(Method.APPROVAL)

    def _compiled(self) -> CompiledPolicy:
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        return compiled


def _other(challenge: Challenge, approver: Subject) -> bool:
    """The approver is neither the challenge's subject nor the app that asked for it."""
    return approver.id not in (challenge.subject_id, challenge.requested_by)
