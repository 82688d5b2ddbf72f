from __future__ import annotations

import piigate.factors
from piigate.factors import CeremonyPurpose, CeremonyState, FactorState
from piigate.factors.recovery import protocol as recovery
from piigate.factors.totp import protocol as totp
from piigate.model import Method


def test_public_api() -> None:
    assert sorted(piigate.factors.__all__) == sorted(
        [
            "CeremonyPurpose",
            "CeremonyState",
            "FactorState",
            "FailurePolicy",
            "LockoutState",
            "lockout_state",
        ]
    )
    # The pure protocol code of each kind declares its own API.
    assert set(totp.__all__) >= {
        "TotpAlgorithm",
        "TotpFailure",
        "TotpMatch",
        "TotpRejected",
        "new_totp_secret",
        "provisioning_uri",
        "qr_svg",
        "verify_totp",
    }
    assert set(recovery.__all__) >= {
        "generate_recovery_codes",
        "hash_recovery_code",
        "match_recovery_code",
        "normalize_recovery_code",
        "spend_recovery_code",
    }
    assert all(hasattr(piigate.factors, name) for name in piigate.factors.__all__)


def test_kinds_and_states_are_the_stored_strings() -> None:
    assert [m.value for m in Method] == [
        "totp",
        "sms",
        "push",
        "webauthn",
        "recovery",
        "approval",
        "email",
    ]
    assert {s.value for s in FactorState} == {"pending", "active", "disabled"}
    assert {s.value for s in CeremonyState} == {"open", "used", "approved", "denied", "expired"}
    # The purposes stored in ``ceremonies.purpose`` (String(32)).
    assert all(len(p.value) <= 32 for p in CeremonyPurpose)
