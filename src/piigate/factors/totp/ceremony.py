"""TOTP at a challenge (RFC 6238): the check plugged into ``Verifier`` for method ``totp``.

The check receives the factors already charged one failure (``Refusals.charge``) and either
returns :class:`~piigate.stepup.verdicts.Verified` or raises
:class:`~piigate.stepup.verdicts.CheckFailed` with the exact reason, for the audit only. The time
step a success spends is saved with a compare-and-set, so two nodes accepting the same code at the
same moment cannot both win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import structlog

from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.factors.ports import FactorRecord, FactorRepo, factor_aad, totp_parameters
from piigate.factors.steps import proof_code
from piigate.factors.totp.protocol import TotpFailure, TotpRejected, verify_totp
from piigate.model import Challenge
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    Proof,
    VerificationFailure,
    Verified,
    most_telling,
)

__all__ = ["TotpCheck", "decrypt_factor_secret"]

log = structlog.get_logger("piigate.verify")

# Compare-and-set retries when another request changed the factor between read and write.
_CAS_RETRIES = 3

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
        code = proof_code(proof, factors)
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
