"""Factors: verification of what a subject presents (pure; the caller persists the outcome).

``totp`` (RFC 6238), ``recovery`` (one-time codes) and ``lockout`` (failure back-off). Nothing
here reads the clock, the store or the network: times, stored secrets and counters come in as
arguments, and what must be saved comes back as a value.
"""

from __future__ import annotations

from enum import StrEnum

from piigate.factors.lockout import FailurePolicy, LockoutState, lockout_state
from piigate.factors.recovery import (
    generate_recovery_codes,
    hash_recovery_code,
    match_recovery_code,
    normalize_recovery_code,
    spend_recovery_code,
)
from piigate.factors.totp import (
    TotpAlgorithm,
    TotpFailure,
    TotpMatch,
    TotpRejected,
    new_totp_secret,
    provisioning_uri,
    qr_svg,
    verify_totp,
)

__all__ = [
    "FactorKind",
    "FactorState",
    "FailurePolicy",
    "LockoutState",
    "TotpAlgorithm",
    "TotpFailure",
    "TotpMatch",
    "TotpRejected",
    "generate_recovery_codes",
    "hash_recovery_code",
    "lockout_state",
    "match_recovery_code",
    "new_totp_secret",
    "normalize_recovery_code",
    "provisioning_uri",
    "qr_svg",
    "spend_recovery_code",
    "verify_totp",
]


class FactorKind(StrEnum):
    """What kind of authenticator a factor is (the ``factors.kind`` column)."""

    TOTP = "totp"
    WEBAUTHN = "webauthn"
    SMS = "sms"
    PUSH = "push"
    RECOVERY = "recovery"


class FactorState(StrEnum):
    """``pending`` until the subject proves possession once; ``disabled`` keeps history."""

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"
