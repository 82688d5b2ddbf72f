"""Recovery codes at a challenge: the check plugged into ``Verifier`` for method ``recovery``.

One of the subject's ten codes, spent once by a compare-and-set on the factor's data, so a code
raced from two nodes is accepted by one only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from piigate.factors import FactorState
from piigate.factors.ports import FactorRecord, FactorRepo
from piigate.factors.recovery.protocol import (
    match_recovery_code,
    normalize_recovery_code,
    spend_recovery_code,
)
from piigate.factors.steps import proof_code
from piigate.model import Challenge, Method
from piigate.ports import AuditRecorder
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    Proof,
    VerificationFailure,
    Verified,
    most_telling,
)

__all__ = ["RecoveryCheck"]

# Compare-and-set retries when another request changed the factor between read and write.
_CAS_RETRIES = 3
# Each argon2 verification costs ~0.1 s of CPU and 64 MiB: bound the parallel work.
_HASHING_SLOTS = 2


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
        code = proof_code(proof, factors)
        if normalize_recovery_code(code) is None:
            raise CheckFailed(VerificationFailure.MALFORMED, factors[0].id)
        reasons: list[tuple[VerificationFailure, str]] = []
        for factor in factors:
            hashes = _recovery_hashes(factor.data)
            tags = _recovery_tags(factor.data)
            async with self._hashing:
                index = await asyncio.to_thread(match_recovery_code, code, hashes, tags)
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
                    f.id for f in others if f.id != verified.factor.id and f.kind != Method.RECOVERY
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
    return _strings(data.get("hashes")) or []


def _recovery_tags(data: Mapping[str, Any]) -> list[str | None] | None:
    """The codes' tags, or None for a set stored before there were tags."""
    return _strings(data.get("tags"))


def _strings(value: object) -> list[str | None] | None:
    if not isinstance(value, list):
        return None
    return [item if isinstance(item, str) else None for item in value]
