"""The built-in factor checks: TOTP codes and recovery codes (plugged into ``Verifier``).

Each check receives the factors already charged one failure (``Refusals.charge``) and either
returns :class:`~piigate.stepup.verdicts.Verified` or raises
:class:`~piigate.stepup.verdicts.CheckFailed` with the exact reason, for the audit only.
What a success spends — the TOTP time step, a recovery code — is saved with a compare-and-set,
so two nodes accepting the same code at the same moment cannot both win.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.factors import (
    FactorState,
    TotpFailure,
    TotpRejected,
    match_recovery_code,
    normalize_recovery_code,
    spend_recovery_code,
    verify_totp,
)
from piigate.model import Challenge
from piigate.stepup.factor_ports import (
    AuditRecorder,
    FactorRecord,
    FactorRepo,
    factor_aad,
    totp_parameters,
)
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    Proof,
    VerificationFailure,
    Verified,
    most_telling,
)

__all__ = ["RecoveryCheck", "TotpCheck", "decrypt_factor_secret"]

log = structlog.get_logger("piigate.verify")

# Compare-and-set retries when another request changed the factor between read and write.
_CAS_RETRIES = 3
# Recovery matching costs ~0.1 s of CPU and 64 MiB per stored hash: bound the parallel work.
_HASHING_SLOTS = 2

_TOTP_REASONS: Mapping[TotpFailure, VerificationFailure] = {
    TotpFailure.WRONG_CODE: VerificationFailure.WRONG_CODE,
    TotpFailure.REPLAYED: VerificationFailure.REPLAYED,
    TotpFailure.MALFORMED: VerificationFailure.MALFORMED,
}


def decrypt_factor_secret(keyring: Keyring, factor: FactorRecord) -> Secret[str] | None:
    """A factor's secret in the clear (ASCII), or None when absent or unreadable (logged)."""
    if factor.secret is None:
        return None
    try:
        raw = keyring.decrypt(factor.secret, aad=factor_aad(factor.id))
        return Secret(raw.decode("ascii"))
    except (DecryptionError, UnicodeDecodeError):
        log.warning("factor_secret_unreadable", factor_id=factor.id)
        return None


def _code(proof: Proof, factors: Sequence[FactorRecord]) -> Secret[str]:
    if proof.code is None:
        raise CheckFailed(VerificationFailure.MALFORMED, factors[0].id if factors else None)
    return proof.code


class TotpCheck(FactorCheck):
    """RFC 6238 codes, ±1 step; a step at or before the last accepted one is a replay."""

    amr = ("otp",)

    def __init__(self, store: FactorRepo, keyring: Keyring) -> None:
        self.store = store
        self.keyring = keyring

    async def check(
        self,
        challenge: Challenge,
        proof: Proof,
        factors: Sequence[FactorRecord],
        now: datetime,
    ) -> Verified:
        code = _code(proof, factors)
        reasons: list[tuple[VerificationFailure, str]] = []
        for factor in factors:
            secret = decrypt_factor_secret(self.keyring, factor)
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
                return Verified(factor, self.amr, {"drift": match.drift})
            reasons.append((VerificationFailure.REPLAYED, factor.id))
        raise CheckFailed(*most_telling(reasons))

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


class RecoveryCheck(FactorCheck):
    """One of the subject's ten recovery codes, spent once. A success unlocks the subject's other
    factors (a lockout ends with a recovery code) and is announced with ``recovery_code_used``."""

    amr = ("kba",)

    def __init__(self, store: FactorRepo, audit: AuditRecorder) -> None:
        self.store = store
        self.audit = audit
        self._hashing = asyncio.Semaphore(_HASHING_SLOTS)

    async def check(
        self,
        challenge: Challenge,
        proof: Proof,
        factors: Sequence[FactorRecord],
        now: datetime,
    ) -> Verified:
        code = _code(proof, factors)
        if normalize_recovery_code(code) is None:
            raise CheckFailed(VerificationFailure.MALFORMED, factors[0].id)
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
                return Verified(factor, self.amr, {"remaining": remaining})
            reasons.append((VerificationFailure.REPLAYED, factor.id))
        raise CheckFailed(*most_telling(reasons))

    async def succeeded(self, challenge: Challenge, verified: Verified) -> None:
        unlocked: list[str] = []
        for factor in await self.store.list_factors(challenge.subject_id):
            if factor.failures and factor.id != verified.factor.id:
                await self.store.reset_factor_failures(factor.id)
                unlocked.append(factor.id)
        others = await self.store.list_factors(
            challenge.subject_id, states=[FactorState.ACTIVE.value]
        )
        await self.audit.record(
            "recovery_code_used",
            subject_id=challenge.subject_id,
            data={
                "factor_id": verified.factor.id,
                "remaining": verified.detail.get("remaining"),
                "unlocked": sorted(unlocked),
                # The subject's other channels, told that a recovery code was used (by id:
                # each channel's notifier reads the event and reaches its own device).
                "notify": sorted(
                    f.id for f in others if f.id != verified.factor.id and f.kind != "recovery"
                ),
            },
        )

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


def _recovery_hashes(data: Mapping[str, Any]) -> list[str | None]:
    hashes = data.get("hashes")
    if not isinstance(hashes, list):
        return []
    return [h if isinstance(h, str) else None for h in hashes]
