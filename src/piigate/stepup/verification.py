"""Verifying a challenge: one factor's proof in, one signed grant out (CONTRACT §4.3, §5.2-5.4).

``Verifier.verify`` is one explicit pipeline of named steps, the same for every factor kind,
in three units of work of the store plus the audit commit:

1. load the challenge, and the subject's active factors of the method, in one read; a caller
   that is neither the challenge's subject nor the app that asked for it gets 404, so challenge
   ids cannot be probed;
2. admit it: pending, unexpired, and the method one it allows and one with a check;
3. drop the factors locked out (:mod:`piigate.factors.lockout`): permanently locked → 401, in
   back-off → 429 + Retry-After;
4. in one write, count the attempt on the challenge, then *charge* each factor one failure
   before looking at the proof (a conditional increment that stops at the cap), so parallel
   guesses can never check more codes than the profile allows (CONTRACT §5.3) -- steps 3-4 and
   every refusal are :class:`~piigate.stepup.refusals.Refusals`, shared with push answers;
5. run the method's :class:`FactorCheck` (``factors.totp``, ``factors.recovery``,
   ``factors.webauthn``, ``factors.sms``), which returns what a success spends;
6. on success, in one write: the spends by compare-and-set (a TOTP step, an SMS code or a
   WebAuthn ceremony, a sign count: a proof accepted once, across nodes), the failures
   cleared, the challenge approved by compare-and-set (recording how); then sign the grant and
   append ``challenge_verified``.

Out-of-band proofs — a signed push answer, another person's approval — are checked by their own
ceremonies, which call :meth:`Verifier.approve`; the requester then collects the grant once with
:meth:`Verifier.collect` (``GET /v1/challenges/{id}/status``).

Vague outside, exact inside (STYLE.md §9): every refusal is the same ``factor_rejected`` 401 for
the client, while the audit event ``verification_failed`` names the exact
:class:`VerificationFailure`. Codes, secrets and grant tokens are never audited or logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.errors import NotFound, ServiceUnavailable
from piigate.factors.ports import ChallengeReader, FactorRecord, VerifierStore
from piigate.ids import new_id
from piigate.model import Caller, Challenge, ChallengeState, Grant, Method
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.ports import AuditRecorder
from piigate.stepup.grants import issue_grant
from piigate.stepup.refusals import Refusals
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    IssuedGrant,
    Proof,
    VerificationFailure,
    Verified,
)

__all__ = ["Verifier"]

# -- the verifier -------------------------------------------------------------------------------


class Verifier:
    def __init__(
        self,
        *,
        store: VerifierStore,
        challenges: ChallengeReader,
        keyring: Keyring,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        issuer: str,
        checks: Mapping[str, FactorCheck],
        ids: Callable[[str], str] = new_id,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
    ) -> None:
        self.store = store
        self.challenges = challenges
        self.keyring = keyring
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.issuer = issuer
        self.ids = ids
        self.refusals = Refusals(store, audit, base_delay=base_delay, max_delay=max_delay)
        self.checks: dict[str, FactorCheck] = dict(checks)

    def register(self, method: str, check: FactorCheck) -> None:
        """Verify ``method`` proofs with ``check`` (WebAuthn, SMS: their own modules)."""
        self.checks[method] = check

    @property
    def methods(self) -> frozenset[str]:
        """The methods ``verify`` accepts proofs for."""
        return frozenset(self.checks)

    async def verify(
        self,
        challenge_id: str,
        proof: Proof,
        *,
        caller: Caller,
    ) -> IssuedGrant:
        """Check ``proof`` against the challenge; return the grant, or raise.

        Raises ``NotFound`` (unknown, or not the caller's), :class:`VerificationRejected` (401,
        vague), :class:`VerificationThrottled` (429) or ``ServiceUnavailable`` (no policy).
        """
        now = self.clock.now()
        method = proof.method
        check = self.checks.get(method)
        # Unit of work 1: the challenge and the factors that may answer it.
        challenge, factors = await self._load_with_factors(
            challenge_id, method if check is not None else None, caller
        )
        compiled, settings = await self.admit(challenge, method, now)
        if check is None:  # push and approval are answered out of band, not with a code
            await self.refusals.reject(challenge, method, VerificationFailure.METHOD_NOT_ALLOWED)
        if not factors:
            await self.refusals.reject(challenge, method, VerificationFailure.NO_FACTOR)
        # Unit of work 2: the attempt and the factors' failures, before the proof is looked at.
        charged, attempts = await self.refusals.charge(challenge, method, factors, settings, now)
        try:
            verified = await check.check(challenge, proof, charged, now)
        except CheckFailed as failed:
            await self.refusals.fail(challenge, method, failed, attempts)

        # Unit of work 3: what the proof spends, the failures cleared, the challenge approved.
        approval = self._approval(method, settings, verified, now)
        settled = await self.store.settle_verification(
            challenge.id,
            spends=verified.spends,
            reset=[factor.id for factor in charged],
            approval=approval,
            now=now,
        )
        if settled.refused is not None:
            lost = CheckFailed(check.refusal(settled.refused), verified.factor.id)
            await self.refusals.fail(challenge, method, lost, attempts)
        await check.succeeded(challenge, verified)
        if not settled.approved:
            # Approved or denied by a parallel request in the meantime: one challenge, one grant.
            await self.refusals.reject(
                challenge,
                method,
                VerificationFailure.NOT_PENDING,
                factor_id=approval["factor_id"],
                attempts=attempts,
            )
        issued = self._grant(compiled, challenge, approval)
        await self._audit_verified(challenge, approval, verified.detail, issued.grant)
        return issued

    # -- out-of-band approvals: push, another person --------------------------------------------
    async def approve(
        self,
        challenge: Challenge,
        method: str,
        verified: Verified | None,
        *,
        level: str | None = None,
        approver: str | None = None,
    ) -> bool:
        """Approve ``challenge`` with a proof checked elsewhere (a signed push answer, another
        person's approval). The grant is not issued here: the requester collects it once from
        :meth:`collect`. False when the challenge was no longer pending (nothing changes).
        ``verified`` is None for approval by another person (no factor of the subject's is
        involved; ``approver`` names who approved). ``level`` defaults to the method's level.
        """
        now = self.clock.now()
        _compiled, settings = await self.admit(challenge, method, now)
        if level is not None:
            settings = replace(settings, level=level)
        approval = self._approval(method, settings, verified, now)
        if approver is not None:
            approval["approver"] = approver
        if not await self._set_state(challenge, ChallengeState.APPROVED, approval=approval):
            return False
        await self._audit_verified(challenge, approval, verified.detail if verified else {})
        return True

    async def deny(
        self, challenge: Challenge, method: str, reason: VerificationFailure, **detail: object
    ) -> bool:
        """Deny ``challenge`` (a push answered "this wasn't me", an approver said no)."""
        denied = await self._set_state(challenge, ChallengeState.DENIED)
        data: dict[str, object] = {
            "challenge_id": challenge.id,
            "method": method,
            "reason": reason.value,
            **detail,
        }
        await self.audit.record("challenge_denied", subject_id=challenge.subject_id, data=data)
        return denied

    async def collect(self, challenge: Challenge) -> IssuedGrant | None:
        """The grant of an out-of-band approval, handed out once (``GET .../status``)."""
        if (
            challenge.state is not ChallengeState.APPROVED
            or challenge.approval is None
            or challenge.grant_collected
        ):
            return None
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        if not await self.store.collect_challenge_grant(challenge.id, now=self.clock.now()):
            return None
        issued = self._grant(compiled, challenge, challenge.approval)
        await self.audit.record(
            "grant_collected",
            subject_id=challenge.subject_id,
            data={"challenge_id": challenge.id, "grant_id": issued.grant.id},
        )
        return issued

    # -- pipeline steps -------------------------------------------------------------------------
    async def load(self, challenge_id: str, caller: Caller) -> Challenge:
        """The challenge, if the caller may answer it: its subject, or the app that asked."""
        challenge = await self.challenges.get(challenge_id) if len(challenge_id) <= 64 else None
        if challenge is None or not caller.may_answer(challenge):
            raise NotFound("no such challenge")
        return challenge

    async def _load_with_factors(
        self,
        challenge_id: str,
        kind: str | None,
        caller: Caller,
    ) -> tuple[Challenge, Sequence[FactorRecord]]:
        """:meth:`load`, with the subject's active factors of ``kind`` read in the same unit of
        work (they are only looked at once the caller has been let through)."""
        found = None
        if len(challenge_id) <= 64:
            found = await self.challenges.get_with_factors(challenge_id, kind=kind)
        # The subject verifies for itself; an app relays its user's proof only for challenges
        # from its own decisions (CONTRACT §4.3). Anyone else learns nothing: 404, as if absent.
        if found is None or not caller.may_answer(found[0]):
            raise NotFound("no such challenge")
        return found

    async def admit(
        self, challenge: Challenge, method: str, now: datetime
    ) -> tuple[CompiledPolicy, FactorSettings]:
        """The policy and ``method``'s settings, if the challenge can still be answered with it:
        pending, unexpired, and ``method`` allowed and still strong enough. Rejects otherwise."""
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        settings = self._settings(compiled, challenge, method)
        if challenge.state is not ChallengeState.PENDING:
            await self.refusals.reject(challenge, method, VerificationFailure.NOT_PENDING)
        if challenge.expires_at <= now:
            await self._set_state(challenge, ChallengeState.EXPIRED)
            await self.refusals.reject(challenge, method, VerificationFailure.EXPIRED)
        if settings is None:
            await self.refusals.reject(challenge, method, VerificationFailure.METHOD_NOT_ALLOWED)
        return compiled, settings

    def _settings(
        self, compiled: CompiledPolicy, challenge: Challenge, method: str
    ) -> FactorSettings | None:
        if method not in self.checks and method not in _OUT_OF_BAND:
            return None
        if method not in challenge.requirement.methods:
            return None
        try:
            settings = compiled.policy.factors.get(Method(method))
        except ValueError:
            return None
        if settings is None:
            return None
        # The policy may have been reloaded since the challenge was opened: a factor that no
        # longer proves the level the challenge asks for cannot answer it.
        rank = compiled.ranks.get(settings.level)
        needed = compiled.ranks.get(challenge.requirement.level)
        if rank is None or needed is None or rank < needed:
            return None
        return settings

    @staticmethod
    def _approval(
        method: str, settings: FactorSettings, verified: Verified | None, now: datetime
    ) -> dict[str, Any]:
        return {
            "method": method,
            "factor_id": verified.factor.id if verified else None,
            "level": settings.level,
            "amr": list(verified.amr) if verified else [_APPROVAL_AMR],
            "auth_time": int(now.timestamp()),
        }

    def _grant(
        self, compiled: CompiledPolicy, challenge: Challenge, approval: Mapping[str, Any]
    ) -> IssuedGrant:
        required = challenge.requirement
        auth_time = datetime.fromtimestamp(int(approval["auth_time"]), tz=UTC)
        ttl = compiled.policy.stepup.grant_ttl
        if required.max_age:
            # A grant older than max_age no longer meets the rule that asked for it.
            ttl = min(ttl, required.max_age)
        scope = (
            frozenset((cls, challenge.action.value) for cls in challenge.pii)
            if challenge.pii
            else frozenset({("*", challenge.action.value)})
        )
        grant = Grant(
            id=self.ids("grt"),
            subject_id=challenge.subject_id,
            level=str(approval["level"]),
            amr=tuple(str(a) for a in approval["amr"]),
            auth_time=auth_time,
            expires_at=auth_time + timedelta(seconds=ttl),
            scope=scope,
            session_id=challenge.session_id,
            device_id=challenge.device_id,
            binding=required.binding,
            challenge_id=challenge.id,
        )
        token = issue_grant(grant, keyring=self.keyring, issuer=self.issuer)
        return IssuedGrant(token, grant)

    async def _audit_verified(
        self,
        challenge: Challenge,
        approval: Mapping[str, Any],
        detail: Mapping[str, object],
        grant: Grant | None = None,
    ) -> None:
        required = challenge.requirement
        data: dict[str, object] = {
            "challenge_id": challenge.id,
            "decision_id": challenge.decision_id,
            "method": approval["method"],
            "factor_id": approval["factor_id"],
            "level": approval["level"],
            "amr": list(approval["amr"]),
            "bound": required.binding is not None,
            **{k: v for k, v in detail.items() if k in _AUDITED_DETAIL},
        }
        if "approver" in approval:
            data["approver"] = approval["approver"]
        if grant is not None:
            data["grant_id"] = grant.id
            data["expires_at"] = int(grant.expires_at.timestamp())
        await self.audit.record("challenge_verified", subject_id=challenge.subject_id, data=data)

    # -- helpers --------------------------------------------------------------------------------
    async def _set_state(
        self,
        challenge: Challenge,
        new: ChallengeState,
        *,
        approval: Mapping[str, Any] | None = None,
        collected_at: datetime | None = None,
    ) -> bool:
        return await self.store.set_challenge_state(
            challenge.id,
            expected=ChallengeState.PENDING.value,
            new=new.value,
            approval=approval,
            collected_at=collected_at,
        )


# The amr of a grant approved by another person (not an RFC 8176 value: none fits).
_APPROVAL_AMR = "approval"
# Methods proven outside ``verify`` (``approve``): a signed push answer, another person.
_OUT_OF_BAND = frozenset({Method.PUSH.value, Method.APPROVAL.value})
# What of a check's detail goes into ``challenge_verified`` (numbers and flags only).
_AUDITED_DETAIL = frozenset({"drift", "remaining", "sign_count", "user_verified", "number"})
