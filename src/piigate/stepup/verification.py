"""Verifying a challenge: one factor's proof in, one signed grant out (CONTRACT §4.3, §5.2-5.4).

``Verifier.verify`` is one explicit pipeline of named steps, in this order:

1. load the challenge; a caller that is neither its subject nor the app that asked for it gets
   404, so challenge ids cannot be probed;
2. check it is pending, unexpired, and that the method is one it allows (and one we verify);
3. pick the subject's active factors of that kind and drop those locked out
   (:mod:`piigate.factors.lockout`): permanently locked → 401, in back-off → 429 + Retry-After;
4. count the attempt on the challenge, then *charge* each factor one failure before looking at
   the code (a conditional increment that stops at the cap), so parallel guesses can never check
   more codes than the profile allows (CONTRACT §5.3);
5. check the code (:mod:`piigate.factors.totp`, :mod:`piigate.factors.recovery`) and save what
   it spends with a compare-and-set: the TOTP step, or the recovery code;
6. on success: clear the failures, approve the challenge (compare-and-set), sign the grant and
   append ``challenge_verified``.

Vague outside, exact inside (STYLE.md §9): every refusal is the same ``factor_rejected`` 401 for
the client, while the audit event ``verification_failed`` names the exact
:class:`VerificationFailure`. Codes, secrets and grant tokens are never audited or logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

import structlog

from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.errors import FactorRejected, NotFound, ServiceUnavailable, TooManyRequests
from piigate.factors import (
    FactorKind,
    FactorState,
    FailurePolicy,
    TotpFailure,
    TotpRejected,
    lockout_state,
    match_recovery_code,
    normalize_recovery_code,
    spend_recovery_code,
    verify_totp,
)
from piigate.model import Challenge, ChallengeState, Grant
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorKind as PolicyFactor
from piigate.policy.model import FactorSettings
from piigate.stepup.engine import AMR_METHODS, new_id
from piigate.stepup.factor_ports import (
    AuditRecorder,
    ChallengeReader,
    FactorRecord,
    VerifierStore,
    factor_aad,
    totp_parameters,
)
from piigate.stepup.grants import issue_grant

__all__ = [
    "SUPPORTED_METHODS",
    "IssuedGrant",
    "Proof",
    "VerificationFailure",
    "VerificationRejected",
    "VerificationThrottled",
    "Verifier",
]

log = structlog.get_logger("piigate.verify")

# The factor kinds this module verifies (SMS, push and WebAuthn have their own ceremonies).
SUPPORTED_METHODS = frozenset({FactorKind.TOTP.value, FactorKind.RECOVERY.value})
# Compare-and-set retries when another request changed the factor between read and write.
_CAS_RETRIES = 3
# Recovery matching costs ~0.1 s of CPU and 64 MiB per stored hash: bound the parallel work.
_HASHING_SLOTS = 2


def _amr(method: str) -> str:
    # RFC 8176 values: the inverse of the engine's AMR_METHODS, so the engine maps a grant's amr
    # back to the very factor that produced it ("otp" → totp, "kba" → recovery).
    return next(amr for amr, kind in AMR_METHODS.items() if kind == method)


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proof:
    """What a client presents to a challenge: the factor kind and the code it shows."""

    method: str
    code: Secret[str]


@dataclass(frozen=True, slots=True)
class IssuedGrant:
    """The signed grant token and the grant it carries."""

    token: str = field(repr=False)
    grant: Grant


class VerificationFailure(StrEnum):
    """Why a verification was refused: for the audit log, never for the client."""

    WRONG_CODE = "wrong_code"
    MALFORMED = "malformed"
    REPLAYED = "replayed"
    EXPIRED = "expired"
    NOT_PENDING = "not_pending"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NO_FACTOR = "no_factor"
    LOCKED = "locked"
    THROTTLED = "throttled"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    FACTOR_UNREADABLE = "factor_unreadable"


class VerificationRejected(FactorRejected):
    """Renders as the vague ``factor_rejected`` 401; ``reason`` is exact, for the audit."""

    def __init__(self, reason: VerificationFailure) -> None:
        super().__init__()
        self.reason = reason

    def __repr__(self) -> str:
        return f"VerificationRejected({self.reason.value!r})"


class VerificationThrottled(TooManyRequests):
    """Every usable factor is in its failure back-off: 429 with ``Retry-After``, code unchecked."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, "too many failed verifications; retry later")
        self.reason = VerificationFailure.THROTTLED


class _Failed(Exception):
    """Internal: a factor check failed (turned into an audit event and a vague 401)."""

    def __init__(self, reason: VerificationFailure, factor_id: str | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.factor_id = factor_id


_TOTP_REASONS: Mapping[TotpFailure, VerificationFailure] = {
    TotpFailure.WRONG_CODE: VerificationFailure.WRONG_CODE,
    TotpFailure.REPLAYED: VerificationFailure.REPLAYED,
    TotpFailure.MALFORMED: VerificationFailure.MALFORMED,
}
# When several factors were tried, the audit names the most telling reason.
_REASON_ORDER = (
    VerificationFailure.REPLAYED,
    VerificationFailure.WRONG_CODE,
    VerificationFailure.MALFORMED,
    VerificationFailure.FACTOR_UNREADABLE,
)


@dataclass(frozen=True, slots=True)
class _Verified:
    factor: FactorRecord
    detail: Mapping[str, object] = field(default_factory=dict)


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
        # The back-off between failures (factors.lockout): base_delay * 2**(n-1), up to max_delay.
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._hashing = asyncio.Semaphore(_HASHING_SLOTS)

    async def verify(
        self,
        challenge_id: str,
        proof: Proof,
        *,
        caller_subject: str | None,
        caller_key: str | None,
    ) -> IssuedGrant:
        """Check ``proof`` against the challenge; return the grant, or raise.

        Raises ``NotFound`` (unknown, or not the caller's), :class:`VerificationRejected` (401,
        vague), :class:`VerificationThrottled` (429) or ``ServiceUnavailable`` (no policy).
        """
        now = self.clock.now()
        challenge = await self._load(challenge_id, caller_subject, caller_key)
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        method = proof.method
        settings = self._settings(compiled, challenge, method)
        if challenge.state is not ChallengeState.PENDING:
            await self._reject(challenge, method, VerificationFailure.NOT_PENDING)
        if challenge.expires_at <= now:
            await self._set_state(challenge, ChallengeState.EXPIRED)
            await self._reject(challenge, method, VerificationFailure.EXPIRED)
        if settings is None:
            await self._reject(challenge, method, VerificationFailure.METHOD_NOT_ALLOWED)

        factors = await self.store.list_factors(
            challenge.subject_id, kinds=[method], states=[FactorState.ACTIVE.value]
        )
        if not factors:
            await self._reject(challenge, method, VerificationFailure.NO_FACTOR)
        failure_policy = FailurePolicy(
            max_failures=settings.max_failures,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
        )
        usable = await self._unlocked(challenge, method, factors, failure_policy, now)

        attempts = await self.store.record_attempt(challenge.id, now=now)
        if attempts > challenge.max_attempts:
            await self._set_state(challenge, ChallengeState.DENIED)
            await self._reject(
                challenge, method, VerificationFailure.TOO_MANY_ATTEMPTS, attempts=attempts
            )
        try:
            charged = await self._charge(usable, failure_policy, now)
            if method == FactorKind.TOTP:
                verified = await self._check_totp(charged, proof.code, now)
            else:
                verified = await self._check_recovery(charged, proof.code)
        except _Failed as failed:
            if attempts >= challenge.max_attempts:
                await self._set_state(challenge, ChallengeState.DENIED)
            await self._reject(
                challenge, method, failed.reason, factor_id=failed.factor_id, attempts=attempts
            )

        await self._clear_failures(challenge.subject_id, method, charged, verified)
        if not await self._set_state(challenge, ChallengeState.APPROVED):
            # Approved or denied by a parallel request in the meantime: one challenge, one grant.
            await self._reject(
                challenge,
                method,
                VerificationFailure.NOT_PENDING,
                factor_id=verified.factor.id,
                attempts=attempts,
            )
        return await self._grant(compiled, challenge, method, settings, verified, now)

    # -- pipeline steps -------------------------------------------------------------------------
    async def _load(
        self, challenge_id: str, caller_subject: str | None, caller_key: str | None
    ) -> Challenge:
        challenge = await self.challenges.get(challenge_id) if len(challenge_id) <= 64 else None
        if challenge is None:
            raise NotFound("no such challenge")
        # The subject verifies for itself; an app relays its user's proof only for challenges
        # from its own decisions (CONTRACT §4.3). Anyone else learns nothing: 404, as if absent.
        by_subject = caller_subject is not None and caller_subject == challenge.subject_id
        by_app = caller_key is not None and caller_key == challenge.requested_by
        if not (by_subject or by_app):
            raise NotFound("no such challenge")
        return challenge

    @staticmethod
    def _settings(
        compiled: CompiledPolicy, challenge: Challenge, method: str
    ) -> FactorSettings | None:
        if method not in SUPPORTED_METHODS or method not in challenge.requirement.methods:
            return None
        settings = compiled.policy.factors.get(PolicyFactor(method))
        if settings is None:
            return None
        # The policy may have been reloaded since the challenge was opened: a factor that no
        # longer proves the level the challenge asks for cannot answer it.
        rank = compiled.ranks.get(settings.level)
        needed = compiled.ranks.get(challenge.requirement.level)
        if rank is None or needed is None or rank < needed:
            return None
        return settings

    async def _unlocked(
        self,
        challenge: Challenge,
        method: str,
        factors: Sequence[FactorRecord],
        policy: FailurePolicy,
        now: datetime,
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
            await self._audit_failure(challenge, method, VerificationFailure.THROTTLED)
            raise VerificationThrottled(min(waits))
        await self._reject(challenge, method, VerificationFailure.LOCKED)

    async def _charge(
        self, factors: Sequence[FactorRecord], policy: FailurePolicy, now: datetime
    ) -> list[FactorRecord]:
        """Count a failure on each factor *before* checking the code; keep those still under
        the cap. The increment stops at the cap, so the count never passes it either."""
        charged: list[FactorRecord] = []
        for factor in factors:
            try:
                count = await self.store.record_factor_failure(
                    factor.id, now=now, limit=policy.max_failures
                )
            except NotFound:  # removed meanwhile
                continue
            if count <= policy.max_failures:
                charged.append(factor)
        if not charged:
            raise _Failed(VerificationFailure.LOCKED, factors[0].id if factors else None)
        return charged

    async def _check_totp(
        self, factors: Sequence[FactorRecord], code: Secret[str], now: datetime
    ) -> _Verified:
        reasons: list[tuple[VerificationFailure, str]] = []
        for factor in factors:
            secret = self._secret(factor)
            if secret is None:
                reasons.append((VerificationFailure.FACTOR_UNREADABLE, factor.id))
                continue
            try:
                match = verify_totp(
                    secret,
                    code.reveal(),
                    at=now,
                    last_step=factor.last_step,
                    **totp_parameters(factor.data),
                )
            except TotpRejected as rejected:
                reasons.append((_TOTP_REASONS[rejected.reason], factor.id))
                continue
            if await self._advance(factor, match.step):
                return _Verified(factor, {"drift": match.drift})
            reasons.append((VerificationFailure.REPLAYED, factor.id))
        raise _Failed(*_most_telling(reasons))

    async def _advance(self, factor: FactorRecord, step: int) -> bool:
        """Save ``step`` as the last accepted one (compare-and-set). A lost race with an older
        code is retried on the fresh row; with the same or a newer one it is a replay."""
        expected = factor.last_step
        for _ in range(_CAS_RETRIES):
            if await self.store.advance_totp_step(factor.id, expected=expected, new=step):
                return True
            fresh = await self.store.get_factor(factor.id)
            if fresh is None or fresh.last_step is None or fresh.last_step >= step:
                return False
            expected = fresh.last_step
        return False

    def _secret(self, factor: FactorRecord) -> Secret[str] | None:
        if factor.secret is None:
            return None
        try:
            raw = self.keyring.decrypt(factor.secret, aad=factor_aad(factor.id))
            return Secret(raw.decode("ascii"))
        except (DecryptionError, UnicodeDecodeError):
            log.warning("factor_secret_unreadable", factor_id=factor.id)
            return None

    async def _check_recovery(
        self, factors: Sequence[FactorRecord], code: Secret[str]
    ) -> _Verified:
        if normalize_recovery_code(code) is None:
            raise _Failed(VerificationFailure.MALFORMED, factors[0].id)
        reasons: list[tuple[VerificationFailure, str]] = []
        for factor in factors:
            hashes = _recovery_hashes(factor.data)
            async with self._hashing:
                index = await asyncio.to_thread(match_recovery_code, code, hashes)
            if index is None:
                reasons.append((VerificationFailure.WRONG_CODE, factor.id))
                continue
            matched = hashes[index]
            assert matched is not None
            remaining = await self._spend(factor, index, matched)
            if remaining is not None:
                return _Verified(factor, {"remaining": remaining})
            reasons.append((VerificationFailure.REPLAYED, factor.id))
        raise _Failed(*_most_telling(reasons))

    async def _spend(self, factor: FactorRecord, index: int, matched: str) -> int | None:
        """Mark code ``index`` spent (compare-and-set on the factor's data); the codes left, or
        None when a parallel request spent this very code first (a replay)."""
        data = dict(factor.data)
        for _ in range(_CAS_RETRIES):
            hashes = _recovery_hashes(data)
            if index >= len(hashes) or hashes[index] != matched:
                return None
            spent = spend_recovery_code(hashes, index)
            new_data = {**data, "hashes": spent}
            if await self.store.replace_factor_data(
                factor.id, expected_data=data, new_data=new_data
            ):
                return sum(h is not None for h in spent)
            # Another code of the same set was spent meanwhile; ours may still be unspent.
            fresh = await self.store.get_factor(factor.id)
            if fresh is None or fresh.state != FactorState.ACTIVE:
                return None
            data = dict(fresh.data)
        return None

    async def _clear_failures(
        self,
        subject_id: str,
        method: str,
        charged: Sequence[FactorRecord],
        verified: _Verified,
    ) -> None:
        """A success ends the run of consecutive failures. A recovery code also unlocks the
        subject's other factors (factors.lockout: locked until a recovery code resets it)."""
        targets = {factor.id for factor in charged}
        unlocked: list[str] = []
        if method == FactorKind.RECOVERY:
            for factor in await self.store.list_factors(subject_id):
                if factor.failures and factor.id not in targets:
                    unlocked.append(factor.id)
                    targets.add(factor.id)
        for factor_id in sorted(targets):
            await self.store.reset_factor_failures(factor_id)
        if method == FactorKind.RECOVERY:
            await self.audit.record(
                "recovery_code_used",
                subject_id=subject_id,
                data={
                    "factor_id": verified.factor.id,
                    "remaining": verified.detail.get("remaining"),
                    "unlocked": unlocked,
                },
            )

    async def _grant(
        self,
        compiled: CompiledPolicy,
        challenge: Challenge,
        method: str,
        settings: FactorSettings,
        verified: _Verified,
        now: datetime,
    ) -> IssuedGrant:
        required = challenge.requirement
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
            level=settings.level,
            amr=(_amr(method),),
            auth_time=now,
            expires_at=now + timedelta(seconds=ttl),
            scope=scope,
            session_id=challenge.session_id,
            device_id=challenge.device_id,
            binding=required.binding,
            challenge_id=challenge.id,
        )
        token = issue_grant(grant, keyring=self.keyring, issuer=self.issuer)
        data: dict[str, object] = {
            "challenge_id": challenge.id,
            "decision_id": challenge.decision_id,
            "method": method,
            "factor_id": verified.factor.id,
            "level": grant.level,
            "grant_id": grant.id,
            "bound": grant.binding is not None,
            "expires_at": int(grant.expires_at.timestamp()),
        }
        if "drift" in verified.detail:
            data["drift"] = verified.detail["drift"]
        await self.audit.record("challenge_verified", subject_id=challenge.subject_id, data=data)
        return IssuedGrant(token, grant)

    # -- helpers --------------------------------------------------------------------------------
    async def _set_state(self, challenge: Challenge, new: ChallengeState) -> bool:
        return await self.store.set_challenge_state(
            challenge.id, expected=ChallengeState.PENDING.value, new=new.value
        )

    async def _audit_failure(
        self,
        challenge: Challenge,
        method: str,
        reason: VerificationFailure,
        *,
        factor_id: str | None = None,
        attempts: int | None = None,
    ) -> None:
        data: dict[str, object] = {
            "challenge_id": challenge.id,
            # The method is the client's string: record it only when it names a known kind.
            "method": method if method in set(FactorKind) else "unknown",
            "reason": reason.value,
        }
        if factor_id is not None:
            data["factor_id"] = factor_id
        if attempts is not None:
            data["attempts"] = attempts
        await self.audit.record("verification_failed", subject_id=challenge.subject_id, data=data)

    async def _reject(
        self,
        challenge: Challenge,
        method: str,
        reason: VerificationFailure,
        *,
        factor_id: str | None = None,
        attempts: int | None = None,
    ) -> NoReturn:
        await self._audit_failure(challenge, method, reason, factor_id=factor_id, attempts=attempts)
        raise VerificationRejected(reason)


def _recovery_hashes(data: Mapping[str, Any]) -> list[str | None]:
    hashes = data.get("hashes")
    if not isinstance(hashes, list):
        return []
    return [h if isinstance(h, str) else None for h in hashes]


def _most_telling(
    reasons: Sequence[tuple[VerificationFailure, str]],
) -> tuple[VerificationFailure, str | None]:
    for wanted in _REASON_ORDER:
        for reason, factor_id in reasons:
            if reason is wanted:
                return reason, factor_id
    return VerificationFailure.WRONG_CODE, None
