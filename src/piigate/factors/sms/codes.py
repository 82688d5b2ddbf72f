"""An SMS one-time code: how it is made, sealed, read back and matched, and :class:`SmsCheck`,
which answers a challenge with one (plugged into the
:class:`~piigate.stepup.verification.Verifier`).

A code is :data:`CODE_DIGITS` random digits (``secrets``), kept in its ceremony's ``secret`` as
keyring ciphertext whose associated data names the ceremony. It is accepted once: the ceremony
is closed ``open`` → ``used`` by compare-and-set, and the loser of a race between two correct
answers gets ``REPLAYED``. Only the newest code counts. Sending codes and confirming phones is
:class:`~piigate.factors.sms.ceremony.SmsCeremony`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

import structlog

from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.factors.ports import CeremonyRecord, CeremonyRepo, FactorRecord, SpendCeremony
from piigate.model import Challenge
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    FactorUnreadable,
    Proof,
    VerificationFailure,
    Verified,
)

__all__ = [
    "CEREMONY_SCAN",
    "CODE_DIGITS",
    "SmsCheck",
    "code_aad",
    "code_mismatch",
    "new_code",
    "newest_code",
    "normalised_code",
    "sent_code",
]

log = structlog.get_logger("piigate.verify")

CODE_DIGITS = 6
# Enough for every code one challenge can be sent within the rate limits.
CEREMONY_SCAN = 1000


def code_aad(ceremony_id: str) -> bytes:
    """Binds a code's ciphertext to its ceremony: a code copied onto another row fails."""
    return f"ceremony:{ceremony_id}".encode()


def new_code() -> Secret[str]:
    """A fresh code, uniformly drawn from the system CSPRNG (leading zeros kept)."""
    return Secret(f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}")


def normalised_code(code: Secret[str] | None) -> str | None:
    """The digits of a code as typed (spaces and dashes allowed), or None when malformed."""
    if code is None:
        return None
    digits = "".join(ch for ch in code.reveal() if ch not in " -")
    if len(digits) != CODE_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return digits


async def sent_code(keyring: Keyring, ceremony: CeremonyRecord | None) -> bytes | None:
    """The code ``ceremony`` sent, decrypted (None: no ceremony, or one without a code).

    A code the keyring cannot open is a server fault, not a wrong code:
    :class:`FactorUnreadable` (503) for ``ceremony``'s factor, logged by the ceremony's id.
    """
    if ceremony is None or ceremony.secret is None:
        return None
    try:
        return await keyring.adecrypt(ceremony.secret, aad=code_aad(ceremony.id))
    except DecryptionError:
        log.warning("sms_code_unreadable", ceremony_id=ceremony.id)
        raise FactorUnreadable([ceremony.factor_id] if ceremony.factor_id else []) from None


def code_mismatch(
    ceremony: CeremonyRecord | None, expected: bytes | None, given: str, now: datetime
) -> VerificationFailure | None:
    """Why ``given`` does not answer ``ceremony``, whose code is ``expected`` (:func:`sent_code`)
    -- or None when it does and is still live.

    The code is compared first (in constant time), so the audit says ``REPLAYED`` or ``EXPIRED``
    only for the right code: a wrong guess at a spent code is simply wrong.
    """
    if ceremony is None or expected is None:
        return VerificationFailure.WRONG_CODE
    if not hmac.compare_digest(expected, given.encode("ascii")):
        return VerificationFailure.WRONG_CODE
    if ceremony.state == CeremonyState.USED:
        return VerificationFailure.REPLAYED
    if ceremony.state != CeremonyState.OPEN or ceremony.expires_at <= now:
        return VerificationFailure.EXPIRED
    return None


def newest_code(ceremonies: Sequence[CeremonyRecord]) -> CeremonyRecord | None:
    """The code that counts: the newest still open, else the newest (to name why it failed).
    A resend closes the older codes before opening its own, so at most a race leaves two open."""
    return max(
        ceremonies, key=lambda c: (c.state == CeremonyState.OPEN, c.created_at, c.id), default=None
    )


# -- the check ----------------------------------------------------------------------------------


class SmsCheck(FactorCheck):
    """The newest code sent for the challenge to one of the charged factors, once, in time."""

    amr = ("sms",)  # RFC 8176 §2

    def __init__(self, store: CeremonyRepo, keyring: Keyring) -> None:
        self.store = store
        self.keyring = keyring

    async def check(
        self,
        challenge: Challenge,
        proof: Proof,
        factors: Sequence[FactorRecord],
        now: datetime,
    ) -> Verified:
        first = factors[0].id if factors else None
        given = normalised_code(proof.code)
        if given is None:
            raise CheckFailed(VerificationFailure.MALFORMED, first)
        sent = await self.store.list_ceremonies(
            challenge_id=challenge.id, purposes=[CeremonyPurpose.SMS_CODE], limit=CEREMONY_SCAN
        )
        ceremony = newest_code(sent)
        by_id = {factor.id: factor for factor in factors}
        factor = by_id.get(ceremony.factor_id or "") if ceremony is not None else None
        if ceremony is None or factor is None:
            raise CheckFailed(VerificationFailure.WRONG_CODE, first)
        try:
            expected = await sent_code(self.keyring, ceremony)
        except FactorUnreadable:
            # No factor was checked: every charge is taken back (the attempt too).
            raise FactorUnreadable([f.id for f in factors]) from None
        reason = code_mismatch(ceremony, expected, given, now)
        if reason is VerificationFailure.EXPIRED and ceremony.state == CeremonyState.OPEN:
            await self.store.close_ceremony(ceremony.id, new=CeremonyState.EXPIRED, now=now)
        if reason is not None:
            raise CheckFailed(reason, factor.id)
        # Closed open → used by the Verifier with the approval: of parallel requests with the
        # same code one wins, the others are REPLAYED (``FactorCheck.refusal``).
        return Verified(factor, self.amr, spends=(SpendCeremony(ceremony.id),))
