"""Refusing a verification, and what each refusal costs (CONTRACT §5.3).

Every way of answering a challenge -- a code or a WebAuthn assertion through ``Verifier.verify``, a
number on a push device through ``Verifier.answer`` -- pays for its attempt the same way, before its
proof is looked at: factors locked out are dropped (none left: 401, all in back-off: 429 with
``Retry-After``), the attempt is counted on the challenge (past its cap the challenge is denied),
and each factor is charged one failure with a conditional increment that stops at the cap, so
parallel guesses can never check more codes than the profile allows. A refusal is audited with its
exact :class:`VerificationFailure` and raised as the vague 401.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn

import structlog

from piigate.factors import FailurePolicy, lockout_state
from piigate.factors.ports import FactorRecord, VerifierStore
from piigate.model import Challenge, ChallengeState, Method
from piigate.policy.model import FactorSettings
from piigate.ports import AuditRecorder
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorUnreadable,
    VerificationFailure,
    VerificationRejected,
    VerificationThrottled,
)

__all__ = ["Refusals"]

log = structlog.get_logger("piigate.verify")

# Method names the audit records as given; anything else a client sends is "unknown".
_KNOWN_METHODS = frozenset(Method)


class Refusals:
    """The failure accounting and refusals of verifications, shared by every way of answering.

    ``base_delay``/``max_delay``: the back-off between failures (``factors.lockout``),
    ``base_delay * 2**(n-1)`` up to ``max_delay``.
    """

    def __init__(
        self,
        store: VerifierStore,
        audit: AuditRecorder,
        *,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
    ) -> None:
        self.store = store
        self.audit = audit
        self.base_delay = base_delay
        self.max_delay = max_delay

    async def charge(
        self,
        challenge: Challenge,
        method: str,
        factors: Sequence[FactorRecord],
        settings: FactorSettings,
        now: datetime,
        *,
        factor_id: str | None = None,
    ) -> tuple[list[FactorRecord], int]:
        """Steps 3-4 of the ``Verifier``'s pipeline, before any proof is looked at: the factors
        that may be tried now (none permanently → 401, all in back-off → 429), the attempt
        counted on the challenge (past its cap the challenge is denied, 401), then each factor
        charged one failure. Returns the charged factors and the attempt number. ``factor_id``
        names the one factor of an out-of-band answer (a push device) in the audit.
        """
        policy = FailurePolicy(
            max_failures=settings.max_failures,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
        )
        usable = await self._unlocked(challenge, method, factors, policy, now, factor_id)
        # One transaction: the attempt, then (within the challenge's cap) each factor's failure.
        charge = await self.store.charge_attempt(
            challenge.id,
            [factor.id for factor in usable],
            now=now,
            max_attempts=challenge.max_attempts,
            limit=policy.max_failures,
        )
        attempts = charge.attempts
        if attempts > challenge.max_attempts:
            await self._give_up(challenge)
            await self.reject(
                challenge,
                method,
                VerificationFailure.TOO_MANY_ATTEMPTS,
                factor_id=factor_id,
                attempts=attempts,
                out_of_attempts=True,
            )
        # Keep the factors still under the cap: the increment stops at it, so a factor at the
        # cap already comes back above it and is not checked.
        charged = [
            factor
            for factor in usable
            if charge.failures.get(factor.id, policy.max_failures + 1) <= policy.max_failures
        ]
        if not charged:
            locked = CheckFailed(VerificationFailure.LOCKED, usable[0].id)
            await self.fail(challenge, method, locked, attempts)
        return charged, attempts

    async def refund(
        self,
        challenge: Challenge,
        charged: Sequence[FactorRecord],
        unreadable: FactorUnreadable,
        now: datetime,
    ) -> None:
        """Take back what :meth:`charge` counted at ``now`` for the factors the proof could not
        be checked against (a server fault, not a guess), and the attempt when that is every
        factor charged. A factor the proof was checked against keeps its failure."""
        before = {f.id: f.last_failure_at for f in charged if f.id in unreadable.factor_ids}
        everything = len(before) == len(charged)
        log.warning("verification_unreadable", challenge_id=challenge.id, factor_ids=[*before])
        await self.store.refund_charge(challenge.id, before, charged_at=now, attempt=everything)

    async def fail(
        self,
        challenge: Challenge,
        method: str,
        failed: CheckFailed,
        attempts: int,
    ) -> NoReturn:
        """A proof that did not hold: on the last attempt the challenge is denied; then the
        vague 401 with the exact reason audited."""
        last = attempts >= challenge.max_attempts
        if last:
            await self._give_up(challenge)
        await self.reject(
            challenge,
            method,
            failed.reason,
            factor_id=failed.factor_id,
            attempts=attempts,
            out_of_attempts=last,
        )

    async def _give_up(self, challenge: Challenge) -> None:
        """Out of attempts: the challenge is denied (what else ends with it is closed by the
        check's ``out_of_attempts`` hook, run by the ``Verifier``)."""
        await self.store.set_challenge_state(
            challenge.id, expected=ChallengeState.PENDING.value, new=ChallengeState.DENIED.value
        )

    async def _unlocked(
        self,
        challenge: Challenge,
        method: str,
        factors: Sequence[FactorRecord],
        policy: FailurePolicy,
        now: datetime,
        factor_id: str | None,
    ) -> list[FactorRecord]:
        """The factors that may be tried now. None permanently → 401; all waiting → 429."""
        usable: list[FactorRecord] = []
        waits: list[int] = []
        for factor in factors:
            state = lockout_state(factor.failures, factor.last_failure_at, now=now, policy=policy)
            if not state.locked:
                usable.append(factor)
            elif not state.permanently_locked:
                waits.append(state.retry_after)
        if usable:
            return usable
        if waits:
            throttled = VerificationFailure.THROTTLED
            await self.audit_failure(challenge, method, throttled, factor_id=factor_id)
            raise VerificationThrottled(min(waits))
        await self.reject(challenge, method, VerificationFailure.LOCKED, factor_id=factor_id)

    async def audit_failure(
        self,
        challenge: Challenge,
        method: str,
        reason: VerificationFailure,
        *,
        factor_id: str | None = None,
        attempts: int | None = None,
    ) -> None:
        """Append ``verification_failed`` with the exact reason (never the proof itself)."""
        data: dict[str, object] = {
            "challenge_id": challenge.id,
            # The method is the client's string: record it only when it names a known kind.
            "method": method if method in _KNOWN_METHODS else "unknown",
            "reason": reason.value,
        }
        if factor_id is not None:
            data["factor_id"] = factor_id
        if attempts is not None:
            data["attempts"] = attempts
        await self.audit.record("verification_failed", subject_id=challenge.subject_id, data=data)

    async def reject(
        self,
        challenge: Challenge,
        method: str,
        reason: VerificationFailure,
        *,
        factor_id: str | None = None,
        attempts: int | None = None,
        out_of_attempts: bool = False,
    ) -> NoReturn:
        """Audit ``reason`` and raise the vague :class:`VerificationRejected`."""
        await self.audit_failure(challenge, method, reason, factor_id=factor_id, attempts=attempts)
        raise VerificationRejected(reason, out_of_attempts=out_of_attempts)
