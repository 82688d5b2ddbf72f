"""The RFC 9470 §3 challenge for insufficient user authentication."""

from __future__ import annotations

from piigate.errors import StepUpRequired, step_up_header


def test_header_with_max_age() -> None:
    assert step_up_header(["urn:piigate:aal2"], 300) == (
        'Bearer error="insufficient_user_authentication", '
        'acr_values="urn:piigate:aal2", max_age=300'
    )


def test_header_without_max_age() -> None:
    assert step_up_header(["urn:piigate:aal2"], None) == (
        'Bearer error="insufficient_user_authentication", acr_values="urn:piigate:aal2"'
    )


def test_header_max_age_zero_is_kept() -> None:
    # max_age=0 (a fresh authentication for this request) is a value, not an absence.
    assert step_up_header(["urn:piigate:aal3"], 0).endswith(", max_age=0")


def test_several_acr_values_are_space_separated() -> None:
    # RFC 9470 §3: acr_values is a space-separated string, in order of preference.
    assert step_up_header(["urn:a", "urn:b"], None) == (
        'Bearer error="insufficient_user_authentication", acr_values="urn:a urn:b"'
    )


def test_step_up_required_renders_the_header() -> None:
    error = StepUpRequired(acr_values=["urn:piigate:aal2"], max_age=300)
    assert error.status == 401
    assert error.headers() == {"WWW-Authenticate": step_up_header(["urn:piigate:aal2"], 300)}
    assert error.problem()["code"] == "insufficient_user_authentication"
