"""The registry of factor checks a ``Verifier`` starts with: the code-based kinds, which need
nothing but the store, the keyring and the audit. WebAuthn and SMS register theirs when their
ceremonies are wired, since they need the relying party and the sender."""

from __future__ import annotations

from piigate.crypto.keyring import Keyring
from piigate.factors.ports import FactorRepo
from piigate.factors.recovery.ceremony import RecoveryCheck
from piigate.factors.totp.ceremony import TotpCheck
from piigate.model import Method
from piigate.ports import AuditRecorder
from piigate.stepup.verdicts import FactorCheck

__all__ = ["code_checks"]


def code_checks(
    store: FactorRepo, keyring: Keyring, audit: AuditRecorder
) -> dict[str, FactorCheck]:
    """TOTP and recovery-code checks, keyed by method."""
    return {
        Method.TOTP: TotpCheck(keyring),
        Method.RECOVERY: RecoveryCheck(store, audit),
    }
