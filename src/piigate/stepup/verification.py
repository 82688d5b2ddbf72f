"""Verifying a challenge: one factor's proof in, one signed grant out (CONTRACT §4.3, §5.2-5.4).

One pipeline of named steps for every factor kind, in three units of work of the store plus the
audit commit:

1. load the challenge and the subject's active factors of the method in one read; a caller that
   is neither the challenge's subject nor the app that asked for it gets 404 (no probing);
2. admit it (:mod:`piigate.stepup.admission`): pending, unexpired, and the method one it
   allows and one with a check;
3. drop the factors locked out (:mod:`piigate.factors.lockout`): for good → 401, in back-off →
   429 + Retry-After;
4. in one write, count the attempt on the challenge, then *charge* each factor one failure
   before looking at the proof (a conditional increment that stops at the cap), so parallel
   guesses never check more codes than the profile allows (CONTRACT §5.3) -- steps 3-4 and
   every refusal are :class:`~piigate.stepup.refusals.Refusals`;
5. the method's :class:`FactorCheck` (``factors.totp``, ``.recovery``, ``.webauthn``, ``.sms``,
   ``.push``) returns what a success spends; a challenge out of attempts is denied and the
   check's ``out_of_attempts`` hook closes what ends with it (a push);
6. on success, in one write: the spends by compare-and-set (a TOTP step, an SMS code, a WebAuthn
   ceremony or a push, a sign count: accepted once, across nodes), the failures cleared, the
   challenge approved by compare-and-set with its :class:`~piigate.model.Approval`; then
   ``challenge_verified``.

:meth:`Verifier.verify` runs it in-band (the grant returned to the request that proved the
factor), :meth:`Verifier.answer` out-of-band (a signed push answer): the requester collects the
grant once with :meth:`Verifier.collect`; another person approves with :meth:`Verifier.approve`.
Every refusal is the same vague ``factor_rejected`` 401, while ``verification_failed`` names the
exact :class:`VerificationFailure` (STYLE.md §9); a factor a check cannot read is a 503 whose
charge is taken back. Codes, secrets and grant tokens are never audited or logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NoReturn

from piigate.callers import Caller
from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.errors import NotFound, ServiceUnavailable
from piigate.factors.ports import ChallengeReader, FactorRecord, SpendCeremony, VerifierStore
from piigate.ids import MAX_ID_LENGTH, new_id
from piigate.model import (
    Approval,
    Challenge,
    ChallengeState,
    Grant,
    Method,
)
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.ports import AuditRecorder
from piigate.stepup.admission import admission, visible
from piigate.stepup.grants import grant_of_approval, issue_grant
from piigate.stepup.refusals import Refusals
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    FactorUnreadable,
    IssuedGrant,
    Proof,
    VerificationFailure,
    VerificationRejected,
    Verified,
    verified_data,
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
        compiled, settings = await self._admit(challenge, method, now)
        if check is None:  # push and approval are answered out of band, not with a code
            await self.refusals.reject(challenge, method, VerificationFailure.METHOD_NOT_ALLOWED)
        if not factors:
            await self.refusals.reject(challenge, method, VerificationFailure.NO_FACTOR)
        approval, verified = await self._prove(
            challenge, proof, check, factors, settings, now, grant_collected=True
        )
        issued = self._grant(compiled, challenge, approval)
        await self._audit_verified(challenge, approval, verified.detail, issued.grant)
        return issued

    # -- out-of-band answers: a push device, another person -------------------------------------
    async def answer(
        self, challenge: Challenge, proof: Proof, *, check: FactorCheck, factor: FactorRecord
    ) -> None:
        """Check an answer that came over another channel (a push device's, ``factors.push``)
        with ``check``, through the same steps as :meth:`verify` for the one ``factor`` that
        answered (named in every refusal). The approval is recorded, not handed out: the
        requester collects the grant once from :meth:`collect`. Raises as :meth:`verify`."""
        now = self.clock.now()
        _compiled, settings = await self._admit(challenge, proof.method, now)
        approval, verified = await self._prove(
            challenge, proof, check, [factor], settings, now, named=factor.id
        )
        await self._audit_verified(challenge, approval, verified.detail)

    async def refuse(
        self,
        challenge: Challenge,
        method: str,
        reason: VerificationFailure,
        *,
        factor_id: str | None = None,
    ) -> NoReturn:
        """Refuse an answer before anything is charged (a push already answered, or expired):
        ``verification_failed`` with the exact ``reason``, then the vague 401."""
        await self.refusals.reject(challenge, method, reason, factor_id=factor_id)

    async def approve(self, challenge: Challenge, method: str, *, approver: str) -> bool:
        """Approve ``challenge`` on another person's word (``approver``, checked by
        ``factors.approval``). The grant is not issued here: the requester collects it once
        from :meth:`collect`. False when the challenge was no longer pending (nothing changes).
        """
        now = self.clock.now()
        _compiled, settings = await self._admit(challenge, method, now)
        approval = self._approval(method, settings, None, now, approver=approver)
        if not await self._set_state(challenge, ChallengeState.APPROVED, approval=approval):
            return False
        await self._audit_verified(challenge, approval, {})
        return True

    async def deny(
        self,
        challenge: Challenge,
        method: str,
        reason: VerificationFailure,
        *,
        answer: SpendCeremony | None = None,
        factor_id: str | None = None,
        **detail: object,
    ) -> bool:
        """Deny ``challenge`` (a push answered "this wasn't me", an approver said no).

        ``answer`` is the out-of-band answer that denies it (a push closed ``denied``): the
        challenge must then still be answerable with ``method`` (else the vague 401), and the
        answer is spent first, once (spent already: a replay, the vague 401).
        """
        if answer is not None:
            now = self.clock.now()
            await self._admit(challenge, method, now)
            if not await self.store.close_ceremony(
                answer.ceremony_id, new=answer.new, now=now, data=answer.data
            ):
                await self.refuse(
                    challenge, method, VerificationFailure.REPLAYED, factor_id=factor_id
                )
        denied = await self._set_state(challenge, ChallengeState.DENIED)
        data: dict[str, object] = {
            "challenge_id": challenge.id,
            "method": method,
            "reason": reason.value,
            **detail,
        }
        if factor_id is not None:
            data["factor_id"] = factor_id
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
    async def _prove(
        self,
        challenge: Challenge,
        proof: Proof,
        check: FactorCheck,
        factors: Sequence[FactorRecord],
        settings: FactorSettings,
        now: datetime,
        *,
        named: str | None = None,
        grant_collected: bool = False,
    ) -> tuple[Approval, Verified]:
        """Steps 3-6: charge, check, settle. ``named``: the factor every refusal names."""
        method = proof.method
        try:
            # Unit of work 2: the attempt and the factors' failures, before the proof is read.
            charged, attempts = await self.refusals.charge(
                challenge, method, factors, settings, now, factor_id=named
            )
            try:
                verified = await check.check(challenge, proof, charged, now)
            except CheckFailed as failed:
                await self.refusals.fail(challenge, method, failed, attempts)
            except FactorUnreadable as unreadable:  # a server fault (503), not a failure
                await self.refusals.refund(challenge, charged, unreadable, now)
                raise
            # Unit of work 3: what the proof spends, the failures cleared, the challenge approved.
            approval = self._approval(method, settings, verified, now)
            settled = await self.store.settle_verification(
                challenge.id,
                spends=verified.spends,
                reset=[factor.id for factor in charged],
                approval=approval.to_data(),
                now=now,
                grant_collected=grant_collected,
            )
            if settled.refused is not None:
                lost = CheckFailed(check.refusal(settled.refused), verified.factor.id)
                await self.refusals.fail(challenge, method, lost, attempts)
        except VerificationRejected as rejected:
            if rejected.out_of_attempts:
                await check.out_of_attempts(challenge, now)
            raise
        await check.succeeded(challenge, verified)
        if not settled.approved:
            # Approved or denied by a parallel request in the meantime: one challenge, one grant.
            await self.refusals.reject(
                challenge,
                method,
                VerificationFailure.NOT_PENDING,
                factor_id=approval.factor_id,
                attempts=attempts,
            )
        return approval, verified

    async def load(self, challenge_id: str, caller: Caller) -> Challenge:
        """The challenge, if the caller may answer it: its subject, or the app that asked."""
        known = len(challenge_id) <= MAX_ID_LENGTH
        return visible(await self.challenges.get(challenge_id) if known else None, caller)

    async def _load_with_factors(
        self, challenge_id: str, kind: str | None, caller: Caller
    ) -> tuple[Challenge, Sequence[FactorRecord]]:
        """:meth:`load`, with the subject's active factors of ``kind`` read in the same unit of
        work (they are only looked at once the caller has been let through)."""
        if len(challenge_id) <= MAX_ID_LENGTH:
            found = await self.challenges.get_with_factors(challenge_id, kind=kind)
            if found is not None:
                return visible(found[0], caller), found[1]
        raise NotFound("no such challenge")

    async def _admit(
        self, challenge: Challenge, method: str, now: datetime
    ) -> tuple[CompiledPolicy, FactorSettings]:
        """The policy and ``method``'s settings, if the challenge can still be answered with it
        (:func:`~piigate.stepup.admission.admission`). Rejects otherwise; an expired challenge
        is marked so first."""
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        admitted = admission(compiled, challenge, method, now, checked=self.checks)
        if isinstance(admitted, VerificationFailure):
            if admitted is VerificationFailure.EXPIRED:
                await self._set_state(challenge, ChallengeState.EXPIRED)
            await self.refusals.reject(challenge, method, admitted)
        return compiled, admitted

    @staticmethod
    def _approval(
        method: str,
        settings: FactorSettings,
        verified: Verified | None,
        now: datetime,
        *,
        approver: str | None = None,
    ) -> Approval:
        return Approval(
            method=Method(method),
            factor_id=verified.factor.id if verified else None,
            level=settings.level,
            amr=verified.amr if verified else (_APPROVAL_AMR,),
            # Whole seconds, as the grant token carries it (``stepup.grants``).
            auth_time=datetime.fromtimestamp(int(now.timestamp()), tz=UTC),
            approver=approver,
        )

    def _grant(
        self, compiled: CompiledPolicy, challenge: Challenge, approval: Approval
    ) -> IssuedGrant:
        grant = grant_of_approval(
            challenge,
            approval,
            grant_id=self.ids("grt"),
            ttl=compiled.policy.stepup.grant_ttl,
        )
        token = issue_grant(grant, keyring=self.keyring, issuer=self.issuer)
        return IssuedGrant(token, grant)

    async def _audit_verified(
        self,
        challenge: Challenge,
        approval: Approval,
        detail: Mapping[str, object],
        grant: Grant | None = None,
    ) -> None:
        data = verified_data(challenge, approval, detail, grant)
        await self.audit.record("challenge_verified", subject_id=challenge.subject_id, data=data)

    # -- helpers --------------------------------------------------------------------------------
    async def _set_state(
        self,
        challenge: Challenge,
        new: ChallengeState,
        *,
        approval: Approval | None = None,
    ) -> bool:
        return await self.store.set_challenge_state(
            challenge.id,
            expected=ChallengeState.PENDING.value,
            new=new.value,
            approval=None if approval is None else approval.to_data(),
        )


# The amr of a grant approved by another person (not an RFC 8176 value: none fits).
_APPROVAL_AMR = "approval"
