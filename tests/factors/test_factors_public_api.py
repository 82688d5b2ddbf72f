from __future__ import annotations

import piigate.factors
from piigate.factors import FactorKind, FactorState
from piigate.factors.recovery import protocol as recovery
from piigate.factors.totp import protocol as totp


def test_public_api() -> None:
    assert sorted(piigate.factors.__all__) == sorted(
        ["FactorKind", "FactorState", "FailurePolicy", "LockoutState", "lockout_state"]
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
    assert [k.value for k in FactorKind] == ["totp", "webauthn", "sms", "push", "recovery"]
    assert {s.value for s in FactorState} == {"pending", "active", "disabled"}
