from __future__ import annotations

import piigate.factors
from piigate.factors import FactorKind, FactorState


def test_public_api() -> None:
    assert sorted(piigate.factors.__all__) == sorted(
        [
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
    )
    assert all(hasattr(piigate.factors, name) for name in piigate.factors.__all__)


def test_kinds_and_states_are_the_stored_strings() -> None:
    assert [k.value for k in FactorKind] == ["totp", "webauthn", "sms", "push", "recovery"]
    assert {s.value for s in FactorState} == {"pending", "active", "disabled"}
