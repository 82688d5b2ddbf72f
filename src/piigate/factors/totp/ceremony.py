"""TOTP at a challenge (RFC 6238): the check plugged into ``Verifier`` for method ``totp``.

The check receives the factors already charged one failure (``Refusals.charge``) and either
returns :class:`~piigate.stepup.verdicts.Verified` or raises
:class:`~piigate.stepup.verdicts.CheckFailed` with the exact reason, for the audit only. A
secret the keyring cannot open is a server fault (:class:`FactorUnreadable`, 503), not a wrong
code: what was charged for it is taken back. The time
step a success spends is returned (``AdvanceTotpStep``) and saved by the ``Verifier`` with a
compare-and-set, so two nodes accepting the same code at the same moment cannot both win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import structlog

from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.factors.ports import AdvanceTotpStep, FactorRecord, factor_aad, totp_parameters
from piigate.factors.steps import proof_code
from piigate.factors.totp.protocol import TotpFailure, TotpRejected, verify_totp
from piigate.model import Challenge
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    FactorUnreadable,
    Proof,
    VerificationFailure,
    Verified,
    most_telling,
)

__all__ = ["TotpCheck", "decrypt_factor_secret"]

log = structlog.get_logger("piigate.verify")

_TOTP_REASONS: Mapping[TotpFailure, VerificationFailure] = {
    TotpFailure.WRONG_CODE: VerificationFailure.WRONG_CODE,
    TotpFailure.REPLAYED: VerificationFailure.REPLAYED,
    TotpFailure.MALFORMED: VerificationFailure.MALFORMED,
}


async def decrypt_factor_secret(keyring: Keyring, factor: FactorRecord) -> Secret[str] | None:
    """A factor's secret in the clear (ASCII), or None when absent or unreadable (logged)."""
    if factor.secret is None:
        return None
    try:
        raw = await keyring.adecrypt(factor.secret, aad=factor_aad(factor.id))
        return Secret(raw.decode("ascii"))
    except (DecryptionError, UnicodeDecodeError):
        log.warning("factor_secret_unreadable", factor_id=factor.id)
        return None


class TotpCheck(FactorCheck):
    """RFC 6238 codes, ±1 step; a step at or before the last accepted one is a replay."""

    amr = ("otp",)

    def __init__(self, keyring: Keyring) -> None:
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
        unreadable: list[str] = []
        for factor in factors:
            secret = await decrypt_factor_secret(self.keyring, factor)
            if secret is None:
                unreadable.append(factor.id)
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
            # The step is saved by the Verifier, with the approval: later than the saved one
            # or not at all, so of two nodes accepting this code at once only one wins.
            spend = AdvanceTotpStep(factor.id, match.step)
            return Verified(factor, self.amr, {"drift": match.drift}, spends=(spend,))
        if unreadable:  # the code may be one of those: it could not be checked
            raise FactorUnreadable(unreadable)
        raise CheckFailed(*most_telling(reasons))
