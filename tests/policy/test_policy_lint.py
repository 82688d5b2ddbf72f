"""Profile lints (CONTRACT §5.5): violations are load errors with their line."""

from __future__ import annotations

import textwrap

import pytest

from piigate.errors import PolicyError
from piigate.model import Method
from piigate.policy import Profile, load_policy_text


def text(profile: str, factors: str, rules: str | None = None) -> str:
    rules = rules or textwrap.dedent(
        """\
        - name: read
          when: {action: [read]}
          require: {level: aal2}
        """
    )
    return (
        textwrap.dedent(
            f"""\
            version: 1
            profile: {profile}
            levels:
              aal1: {{acr: a1}}
              aal2: {{acr: a2}}
              aal3: {{acr: a3}}
            factors:
            """
        )
        + textwrap.indent(textwrap.dedent(factors), "  ")
        + "rules:\n"
        + textwrap.indent(textwrap.dedent(rules), "  ")
    )


def errors(source: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(source, source="p.yaml")
    return info.value.errors


def line_of(source: str, needle: str) -> int:
    return source[: source.index(needle)].count("\n") + 1


def col_of(source: str, needle: str) -> int:
    start = source.index(needle)
    return start - source.rfind("\n", 0, start)


# -- psd2 --------------------------------------------------------------------------------------


def test_psd2_flags_more_than_five_failures() -> None:
    src = text("psd2", "totp: {level: aal2, max_failures: 6}\n")
    (error,) = errors(src)
    at = f"p.yaml:{line_of(src, 'max_failures: 6')}:{col_of(src, '6}')}: "
    assert error.startswith(at)
    assert "profile psd2" in error and "6 failures" in error and "at most 5" in error


def test_psd2_flags_codes_living_longer_than_five_minutes() -> None:
    src = text("psd2", "sms: {level: aal2, code_lifetime: 6m}\n")
    (error,) = errors(src)
    assert error.startswith(f"p.yaml:{line_of(src, '6m')}:{col_of(src, '6m')}: ")
    assert "360s" in error and "at most 300s" in error


def test_psd2_accepts_its_own_limits() -> None:
    src = text("psd2", "sms: {level: aal2, code_lifetime: 5m, max_failures: 5}\n")
    policy = load_policy_text(src)
    assert policy.profile is Profile.PSD2


def test_psd2_flags_a_transact_rule_without_dynamic_linking() -> None:
    rules = """\
    - name: read
      when: {action: [read]}
      require: {level: aal2}
    - name: transfer
      when: {action: [transact], amount_over: 100}
      require: {level: aal2, max_age: 5m}
    - name: linked
      when: {action: [transact, update]}
      require: {level: aal2, max_age: 0}
    - name: blocked
      when: {action: [transact], roles: [intern]}
      deny: "interns cannot pay"
    """
    src = text("psd2", "totp: {level: aal2}\n", rules)
    (error,) = errors(src)
    at = f"p.yaml:{line_of(src, 'name: transfer')}:{col_of(src, 'name: transfer')}: "
    assert error.startswith(at)
    assert "transaction rule 'transfer' needs dynamic linking (require.max_age: 0)" in error


def test_psd2_flags_an_every_action_rule_with_an_amount() -> None:
    rules = """\
    - name: any-big-amount
      when: {amount_over: 100}
      require: {level: aal2}
    - name: any-action
      when: {roles: [support]}
      require: {level: aal2}
    """
    src = text("psd2", "totp: {level: aal2}\n", rules)
    (error,) = errors(src)
    assert error.startswith(f"p.yaml:{line_of(src, 'name: any-big-amount')}:")
    assert "any-big-amount" in error


def test_psd2_defaults_and_several_violations_at_once() -> None:
    src = text("psd2", "totp: {level: aal2}\nsms: {level: aal2, max_failures: 10}\n")
    found = errors(src)
    assert len(found) == 1 and "sms" in found[0]
    ok = load_policy_text(text("psd2", "totp: {level: aal2}\nwebauthn: {level: aal3}\n"))
    # CONTRACT §5.5: factor settings default to the profile's limits.
    assert ok.factors[Method.TOTP].max_failures == 5
    assert ok.factors[Method.WEBAUTHN].max_failures == 5
    assert ok.factors[Method.TOTP].code_lifetime == 300
    many = errors(
        text(
            "psd2",
            "totp: {level: aal2, max_failures: 6}\nsms: {level: aal2, code_lifetime: 10m}\n",
            """\
            - name: pay
              when: {action: [transact]}
              require: {level: aal2}
            """,
        )
    )
    assert len(many) == 3


def test_profile_order_in_file_does_not_matter_for_defaults() -> None:
    src = text("psd2", "totp: {level: aal2}\n").replace("profile: psd2\n", "") + "profile: psd2\n"
    policy = load_policy_text(src)
    assert policy.factors[Method.TOTP].max_failures == 5


# -- nist-800-63b-4 ----------------------------------------------------------------------------


def test_nist_flags_sms_not_declared_restricted() -> None:
    src = text("nist-800-63b-4", "totp: {level: aal2}\nsms: {level: aal2}\n")
    (error,) = errors(src)
    assert error.startswith(f"p.yaml:{line_of(src, 'sms:')}:")
    assert "SMS must be declared restricted: true" in error
    load_policy_text(text("nist-800-63b-4", "sms: {level: aal2, restricted: true}\n"))


def test_nist_flags_email_codes() -> None:
    src = text("nist-800-63b-4", "totp: {level: aal2}\nemail: {level: aal1}\n")
    (error,) = errors(src)
    assert error.startswith(f"p.yaml:{line_of(src, 'email:')}:")
    assert "e-mail codes are not allowed" in error


def test_nist_flags_push_without_number_matching() -> None:
    for factors in ("push: {level: aal2}\n", "push: {level: aal2, number_matching: false}\n"):
        src = text("nist-800-63b-4", factors)
        (error,) = errors(src)
        assert error.startswith(f"p.yaml:{line_of(src, 'push:')}:")
        assert "push needs number_matching: true" in error
    load_policy_text(text("nist-800-63b-4", "push: {level: aal2, number_matching: true}\n"))


def test_nist_failure_cap_and_defaults() -> None:
    src = text("nist-800-63b-4", "totp: {level: aal2, max_failures: 101}\n")
    (error,) = errors(src)
    assert error.startswith(f"p.yaml:{line_of(src, '101')}:{col_of(src, '101')}: ")
    assert "at most 100" in error
    ok = load_policy_text(text("nist-800-63b-4", "totp: {level: aal2}\n"))
    assert ok.factors[Method.TOTP].max_failures == 100
    # NIST puts no 5-minute cap on code lifetime, and transact rules need no max_age: 0.
    load_policy_text(
        text(
            "nist-800-63b-4",
            "totp: {level: aal2, code_lifetime: 10m}\n",
            """\
            - name: pay
              when: {action: [transact]}
              require: {level: aal2}
            """,
        )
    )


def test_nist_reports_every_violation() -> None:
    src = text(
        "nist-800-63b-4",
        "sms: {level: aal2}\nemail: {level: aal1}\npush: {level: aal2}\n",
    )
    found = errors(src)
    assert len(found) == 3
    assert {int(e.split(":")[1]) for e in found} == {
        line_of(src, "sms:"),
        line_of(src, "email:"),
        line_of(src, "push:"),
    }


def test_without_a_profile_nothing_is_linted() -> None:
    src = text("psd2", "sms: {level: aal2, max_failures: 1000}\nemail: {level: aal1}\n")
    policy = load_policy_text(src.replace("profile: psd2\n", ""))
    assert policy.profile is None
    assert policy.factors[Method.SMS].max_failures == 1000


# -- any profile ---------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["nist-800-63b-4", "psd2"])
def test_a_phishing_resistant_level_is_proven_only_by_webauthn(profile: str) -> None:
    base = text(profile, "totp: {level: aal3}\nwebauthn: {level: aal3}\n")
    src = base.replace("aal3: {acr: a3}", "aal3: {acr: a3, phishing_resistant: true}")
    (error,) = errors(src)
    assert error.startswith(f"p.yaml:{line_of(src, 'totp:')}:")
    assert "factor totp cannot prove aal3: that level is phishing resistant" in error
    load_policy_text(src.replace("totp: {level: aal3}", "totp: {level: aal2}"))
