"""Loading policy files (CONTRACT §2): every problem reported as ``FILE:LINE:COL: message``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from piigate.errors import PolicyError
from piigate.model import Method
from piigate.policy import load_policy, load_policy_text
from piigate.policy.model import ANY_PII, GrantsFrom, Otherwise
from position_support import locate

BASE = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:x:aal1"}
      aal2: {acr: "urn:x:aal2", aliases: ["2"]}
    pii:
      ssn: {sensitivity: high}
      phone: {sensitivity: medium}
    factors:
      totp: {level: aal2}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
    """
)


def errors_of(tmp_path: Path, text: str, name: str = "policy.yaml") -> tuple[str, list[str]]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(str(path))
    return str(path), info.value.errors


def assert_error(errors: list[str], prefix: str, fragment: str) -> None:
    hits = [e for e in errors if e.startswith(prefix + ": ") and fragment in e]
    assert hits, f"no error {prefix}: ...{fragment}... in:\n" + "\n".join(errors)


def test_the_base_policy_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(BASE, encoding="utf-8")
    policy = load_policy(str(path))
    assert [level.name for level in policy.levels] == ["aal1", "aal2"]
    assert [level.rank for level in policy.levels] == [0, 1]
    assert policy.levels[1].aliases == ("2",)
    assert set(policy.pii) == {"ssn", "phone"}
    assert policy.factors[Method.TOTP].level == "aal2"
    (rule,) = policy.rules
    assert rule.name == "read-ssn"
    assert rule.when.pii == frozenset({"ssn"})
    assert rule.when.actions == frozenset({"read"})
    assert rule.require is not None and rule.require.max_age == 300
    assert rule.otherwise is Otherwise.DENY
    assert rule.position is not None and (rule.position.line, rule.position.column) == (11, 5)
    assert policy.digest.startswith("sha256:")


def test_digest_ignores_comments_and_layout() -> None:
    reformatted = BASE.replace("rules:\n", "# the rules\nrules:   \n")
    assert load_policy_text(BASE).digest == load_policy_text(reformatted).digest
    changed = BASE.replace("max_age: 5m", "max_age: 6m")
    assert load_policy_text(BASE).digest != load_policy_text(changed).digest


def test_pii_any_and_star_action_and_durations() -> None:
    text = BASE + textwrap.indent(
        textwrap.dedent(
            """\
            - name: delete-any
              when: {pii: any, action: ["*"]}
              require: {level: aal2, max_age: 0}
            - name: plain-seconds
              when: {action: read, amount_over: 10.50}
              require: {level: aal1, max_age: 90}
            - name: hours
              when: {action: [read]}
              require: {level: aal1, max_age: 12h}
            """
        ),
        "  ",
    )
    policy = load_policy_text(text)
    rules = {r.name: r for r in policy.rules}
    assert rules["delete-any"].when.pii == ANY_PII
    assert rules["delete-any"].when.actions is None  # "*" = every action
    assert rules["delete-any"].require is not None
    assert rules["delete-any"].require.max_age == 0
    assert rules["plain-seconds"].require is not None
    assert rules["plain-seconds"].require.max_age == 90
    assert str(rules["plain-seconds"].when.amount_over) == "10.50"
    assert rules["hours"].require is not None
    assert rules["hours"].require.max_age == 12 * 3600


# -- one kind of error at a time, each at its exact position --------------------------------

RULES_AT = BASE.index("rules:\n")


def with_rules(rules: str) -> str:
    """BASE with its rules replaced by ``rules`` (a dedented YAML list, indented here)."""
    return BASE[:RULES_AT] + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  ")


CASES: list[tuple[str, str, str, int, str]] = [
    # (id, policy text, needle the error points at, occurrence, message fragment)
    (
        "unknown-top-level-key",
        BASE + "colour: blue\n",
        "colour",
        1,
        "unknown key 'colour' in the policy",
    ),
    (
        "unknown-rule-key",
        with_rules(
            """\
            - name: r
              when: {action: [read]}
              require: {level: aal2}
              priority: 3
            """
        ),
        "priority",
        1,
        "unknown key 'priority' in a rule",
    ),
    (
        "unknown-when-key",
        with_rules(
            """\
            - name: r
              when: {action: [read], table: customers}
              require: {level: aal2}
            """
        ),
        "table",
        1,
        "unknown key 'table' in 'when' of rule 'r'",
    ),
    (
        "unknown-require-key",
        with_rules(
            """\
            - name: r
              when: {action: [read]}
              require: {level: aal2, fresh: true}
            """
        ),
        "fresh",
        1,
        "unknown key 'fresh' in 'require' of rule 'r'",
    ),
    (
        "unknown-factor-key",
        BASE.replace("totp: {level: aal2}", "totp: {level: aal2, digits: 8}"),
        "digits",
        1,
        "unknown key 'digits' in factor 'totp'",
    ),
    (
        "unknown-level-key",
        BASE.replace('aal1: {acr: "urn:x:aal1"}', 'aal1: {acr: "urn:x:aal1", strength: 1}'),
        "strength",
        1,
        "unknown key 'strength' in level 'aal1'",
    ),
    (
        "unknown-level-in-require",
        BASE.replace("require: {level: aal2, max_age: 5m}", "require: {level: aal9}"),
        "aal9",
        1,
        "unknown level 'aal9'",
    ),
    (
        "unknown-level-in-factor",
        BASE.replace("totp: {level: aal2}", "totp: {level: gold}"),
        "gold",
        1,
        "unknown level 'gold' in the level of factor 'totp'",
    ),
    (
        "unknown-pii-class",
        BASE.replace("pii: [ssn]", "pii: [ssn, iban]"),
        "iban",
        1,
        "unknown PII class 'iban'",
    ),
    (
        "unknown-factor-name",
        BASE.replace("  totp: {level: aal2}\n", "  totp: {level: aal2}\n  carrier_pigeon: {}\n"),
        "carrier_pigeon",
        1,
        "unknown factor 'carrier_pigeon'",
    ),
    (
        "unknown-factor-in-methods",
        BASE.replace("max_age: 5m}", "max_age: 5m, methods: [totp, yubiotp]}"),
        "yubiotp",
        1,
        "unknown factor 'yubiotp' in methods",
    ),
    (
        "unconfigured-factor-in-methods",
        BASE.replace("max_age: 5m}", "max_age: 5m, methods: [webauthn]}"),
        "webauthn",
        1,
        "factor 'webauthn' is not configured",
    ),
    (
        "unknown-action",
        BASE.replace("action: [read]", "action: [read, peek]"),
        "peek",
        1,
        "unknown action 'peek'",
    ),
    (
        "unknown-signal-in-when",
        BASE.replace("action: [read]", "action: [read], signals: [new_device, moon_phase]"),
        "moon_phase",
        1,
        "unknown risk signal 'moon_phase'",
    ),
    (
        "unknown-signal-in-risk",
        BASE + "risk:\n  new_device: 30\n  moon_phase: 10\n",
        "moon_phase",
        1,
        "unknown risk signal 'moon_phase'",
    ),
    (
        "bad-duration",
        BASE.replace("max_age: 5m", "max_age: 5x"),
        "5x",
        1,
        "max_age: bad duration '5x'",
    ),
    (
        "negative-duration",
        BASE.replace("max_age: 5m", "max_age: -5"),
        "-5",
        1,
        "max_age: a duration cannot be negative",
    ),
    (
        "unknown-grants-from",
        BASE.replace("max_age: 5m}", "max_age: 5m, grants_from: everyone}"),
        "everyone",
        1,
        "grants_from must be 'this_app' or 'any_app'",
    ),
    (
        "grants-from-not-a-string",
        BASE.replace("max_age: 5m}", "max_age: 5m, grants_from: [any_app]}"),
        "[any_app]",
        1,
        "grants_from must be a string",
    ),
    (
        "shared-grants-on-a-bound-rule",
        BASE.replace("max_age: 5m}", "max_age: 0, grants_from: any_app}"),
        "grants_from: ^any_app",
        1,
        "grants_from: any_app cannot apply with max_age: 0",
    ),
    (
        "duplicate-rule-names",
        with_rules(
            """\
            - name: same
              when: {action: [read]}
              require: {level: aal2}
            - name: same
              when: {action: [update]}
              require: {level: aal2}
            """
        ),
        "name: same",
        2,
        "duplicate rule name 'same'",
    ),
    (
        "duplicate-mapping-key",
        BASE.replace("  phone: {sensitivity: medium}\n", "  phone: {}\n  phone: {}\n"),
        "phone",
        2,
        "duplicate key 'phone' in pii",
    ),
    (
        "duplicate-key-in-flow-mapping",
        BASE.replace("max_age: 5m}", "max_age: 5m, level: aal1}"),
        "level: aal1",
        1,
        "duplicate key 'level'",
    ),
    (
        "rules-not-a-list",
        BASE[:RULES_AT] + "rules: {name: r}\n",
        "{name: r}",
        1,
        "rules must be a list",
    ),
    (
        "risk-at-least-a-string",
        BASE.replace("action: [read]", "action: [read], risk_at_least: high"),
        "risk_at_least: ^high",
        1,
        "risk_at_least must be an integer",
    ),
    (
        "risk-at-least-over-100",
        BASE.replace("action: [read]", "action: [read], risk_at_least: 101"),
        "risk_at_least: ^101",
        1,
        "risk_at_least must be between 0 and 100",
    ),
    (
        "weight-over-100-scalar",
        BASE + "risk:\n  new_device: 130\n",
        "130",
        1,
        "weight of new_device must be between 0 and 100",
    ),
    (
        "weight-over-100-mapping",
        BASE + "risk:\n  velocity: {weight: 101, window: 1m}\n",
        "weight: ^101",
        1,
        "weight of velocity must be between 0 and 100",
    ),
    (
        "both-require-and-deny",
        with_rules(
            """\
            - name: confused
              when: {action: [read]}
              require: {level: aal2}
              deny: "no"
            """
        ),
        "name: confused",
        1,
        "rule 'confused' needs exactly one of 'require' or 'deny'",
    ),
    (
        "neither-require-nor-deny",
        with_rules(
            """\
            - name: idle
              when: {action: [read]}
            """
        ),
        "name: idle",
        1,
        "rule 'idle' needs exactly one of 'require' or 'deny'",
    ),
    (
        "invalid-cel",
        BASE.replace("action: [read]", "action: [read], expr: 'request.action =='"),
        "'request.action =='",
        1,
        "invalid CEL expression",
    ),
    (
        "cel-without-request",
        BASE.replace("action: [read]", "action: [read], expr: 'user == 1'"),
        "'user == 1'",
        1,
        "CEL expression may only use 'request'",
    ),
    (
        "amount-over-not-a-number",
        BASE.replace("action: [read]", "action: [read], amount_over: lots"),
        "lots",
        1,
        "amount_over must be a number",
    ),
    (
        "otherwise-bad-value",
        BASE.replace("max_age: 5m}\n", "max_age: 5m}\n    otherwise: hide\n"),
        "hide",
        1,
        "otherwise must be 'mask' or 'deny'",
    ),
    (
        "unknown-profile",
        BASE + "profile: sox\n",
        "sox",
        1,
        "unknown profile 'sox'",
    ),
    (
        "unsupported-version",
        BASE.replace("version: 1", "version: 2"),
        "version: ^2",
        1,
        "unsupported policy version 2",
    ),
    (
        "version-not-an-integer",
        BASE.replace("version: 1", "version: one"),
        "version: ^one",
        1,
        "version must be an integer",
    ),
]


@pytest.mark.parametrize(
    ("text", "needle", "nth", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_error_is_reported_at_its_position(
    tmp_path: Path, text: str, needle: str, nth: int, fragment: str
) -> None:
    path, errors = errors_of(tmp_path, text)
    line, column = locate(text, needle, nth)
    assert_error(errors, f"{path}:{line}:{column}", fragment)
    # Every line has the FILE:LINE:COL: shape a reader (or an editor) can jump to.
    for error in errors:
        file, line_no, col_no, message = error.split(":", 3)
        assert file == path and int(line_no) >= 1 and int(col_no) >= 1 and message.strip()


def test_positions_are_literal_lines_and_columns(tmp_path: Path) -> None:
    # The same checks with the numbers written out, so the arithmetic of ``locate`` is not
    # the only thing standing between the test and the truth.
    text = textwrap.dedent(
        """\
        version: 1
        levels:
          aal1: {acr: a1}
        pii:
          ssn: {}
        rules:
          - name: r
            when: {pii: [ssn], action: [read]}
            require: {level: aal1, max_age: 5x}
        """
    )
    path, errors = errors_of(tmp_path, text)
    assert errors == [f"{path}:9:37: max_age: bad duration '5x': " + errors[0].split("'5x': ")[1]]


def test_yaml_syntax_error_has_the_parser_position(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        version: 1
        levels:
          aal1: {acr: a1
        rules: []
        """
    )
    path, errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:4:")
    assert "YAML syntax error" in errors[0]


def test_yaml_syntax_error_bad_indentation(tmp_path: Path) -> None:
    text = "version: 1\nlevels:\n  aal1: {acr: a1}\n rules: []\n"
    path, errors = errors_of(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:4:")
    assert "YAML syntax error" in errors[0]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "~\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path, errors = errors_of(tmp_path, text)
    assert errors == [f"{path}:1:1: the file is empty"]


def test_missing_file_is_a_positioned_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    (error,) = info.value.errors
    assert error.startswith(f"{path}:1:1: cannot read file")


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path, errors = errors_of(tmp_path, "- version: 1\n")
    assert errors == [f"{path}:1:1: the policy must be a mapping"]


def test_missing_version(tmp_path: Path) -> None:
    text = BASE.replace("version: 1\n", "")
    path, errors = errors_of(tmp_path, text)
    assert errors == [f"{path}:1:1: missing required key 'version' (use version: 1)"]


def test_missing_levels_and_rules(tmp_path: Path) -> None:
    path, errors = errors_of(tmp_path, "version: 1\n")
    assert f"{path}:1:1: missing required key 'levels'" in errors
    assert f"{path}:1:1: missing required key 'rules'" in errors


def test_rule_without_name_or_when(tmp_path: Path) -> None:
    text = with_rules(
        """\
        - when: {action: [read]}
          require: {level: aal2}
        - name: no-when
          require: {level: aal2}
        """
    )
    path, errors = errors_of(tmp_path, text)
    line, col = locate(text, "- ^when")
    assert_error(errors, f"{path}:{line}:{col}", "a rule needs a 'name'")
    line, col = locate(text, "name: no-when")
    assert_error(errors, f"{path}:{line}:{col}", "rule 'no-when' needs a 'when'")


def test_otherwise_on_a_deny_rule(tmp_path: Path) -> None:
    text = with_rules(
        """\
        - name: d
          when: {action: [export]}
          deny: "never"
          otherwise: mask
        """
    )
    path, errors = errors_of(tmp_path, text)
    line, col = locate(text, "otherwise")
    assert_error(errors, f"{path}:{line}:{col}", "'otherwise' has no meaning on a deny rule")


def test_duplicate_acr_and_alias(tmp_path: Path) -> None:
    text = BASE.replace(
        '  aal2: {acr: "urn:x:aal2", aliases: ["2"]}\n',
        '  aal2: {acr: "urn:x:aal1", aliases: ["2"]}\n'
        '  aal3: {acr: "urn:x:aal3", aliases: ["2"]}\n',
    )
    path, errors = errors_of(tmp_path, text)
    line, col = locate(text, '"urn:x:aal1"', 2)
    assert_error(errors, f"{path}:{line}:{col}", "acr 'urn:x:aal1' already names level 'aal1'")
    line, col = locate(text, '"2"', 2)
    assert_error(errors, f"{path}:{line}:{col}", "alias '2' already names 'aal2'")


def test_many_errors_are_reported_in_one_go(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        version: 1
        levels:
          aal1: {acr: a1}
          aal2: {acr: a2, strength: 2}
        pii:
          ssn: {}
          ssn: {}
        factors:
          totp: {level: gold}
          carrier_pigeon: {level: aal1}
        rules:
          - name: r1
            when: {pii: [ssn, iban], action: [peek], risk_at_least: high}
            require: {level: aal9, max_age: 5x}
          - name: r2
            when: {action: [read], expr: 'request.action =='}
            require: {level: aal2}
            deny: "both"
          - name: r3
            when: {action: [read]}
            deny: "first"
          - name: r3
            when: {action: [read]}
            deny: "dup"
        risk:
          new_device: 130
          moon_phase: 1
        colour: blue
        """
    )
    path, errors = errors_of(tmp_path, text)
    expected = [
        ("strength", 1, "unknown key 'strength' in level 'aal2'"),
        ("ssn", 2, "duplicate key 'ssn' in pii"),
        ("gold", 1, "unknown level 'gold'"),
        ("carrier_pigeon", 1, "unknown factor 'carrier_pigeon'"),
        ("iban", 1, "unknown PII class 'iban'"),
        ("peek", 1, "unknown action 'peek'"),
        ("risk_at_least: ^high", 1, "risk_at_least must be an integer"),
        ("aal9", 1, "unknown level 'aal9'"),
        ("5x", 1, "bad duration '5x'"),
        ("'request.action =='", 1, "invalid CEL expression"),
        ("name: r2", 1, "needs exactly one of 'require' or 'deny'"),
        ("name: r3", 2, "duplicate rule name 'r3'"),
        ("130", 1, "weight of new_device must be between 0 and 100"),
        ("moon_phase", 1, "unknown risk signal 'moon_phase'"),
        ("colour", 1, "unknown key 'colour' in the policy"),
    ]
    for needle, nth, fragment in expected:
        line, col = locate(text, needle, nth)
        assert_error(errors, f"{path}:{line}:{col}", fragment)
    assert len(errors) >= len(expected)


def test_text_loader_uses_the_source_name() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(BASE.replace("max_age: 5m", "max_age: 5x"), source="inline.yaml")
    line, col = locate(BASE, "5m")
    assert info.value.errors[0].startswith(f"inline.yaml:{line}:{col}: ")


def test_foreign_sections_are_tolerated() -> None:
    policy = load_policy_text(BASE + "gateway: {listen: ':5433'}\nservice: {port: 8080}\n")
    assert policy.rules[0].name == "read-ssn"


def test_a_rule_says_whose_grants_meet_it() -> None:
    shared = load_policy_text(BASE.replace("max_age: 5m}", "max_age: 5m, grants_from: any_app}"))
    assert shared.rules[0].require is not None
    assert shared.rules[0].require.grants_from is GrantsFrom.ANY_APP
    # By default only grants obtained through the app that asks.
    default = load_policy_text(BASE).rules[0].require
    assert default is not None and default.grants_from is GrantsFrom.THIS_APP
    explicit = load_policy_text(BASE.replace("max_age: 5m}", "max_age: 0, grants_from: this_app}"))
    assert explicit.rules[0].require is not None
    assert explicit.rules[0].require.grants_from is GrantsFrom.THIS_APP


def test_stepup_settings() -> None:
    policy = load_policy_text(
        BASE + "stepup: {challenge_ttl: 2m, max_attempts: 3, grant_ttl: 1h}\n"
    )
    assert (policy.stepup.challenge_ttl, policy.stepup.max_attempts, policy.stepup.grant_ttl) == (
        120,
        3,
        3600,
    )


def test_risk_defaults_fill_omitted_signals() -> None:
    policy = load_policy_text(BASE + "risk:\n  new_device: 10\n  velocity: {window: 2m}\n")
    signals = policy.risk.signals
    assert signals["new_device"].weight == 10
    assert signals["new_country"].weight == 40  # default
    assert signals["velocity"].weight == 30
    assert signals["velocity"].params == {"window": 120, "limit": 60, "ip_limit": 300}
    assert signals["impossible_travel"].params == {
        "suspicious_kmh": 250,
        "impossible_kmh": 900,
        "tolerance_km": 100,
        "min_elapsed": 300,
    }


def test_travel_parameters_and_the_new_context_signals_are_set_in_the_file() -> None:
    policy = load_policy_text(
        BASE
        + "risk:\n  impossible_travel: {weight: 60, tolerance_km: 50, min_elapsed: 10m}\n"
        + "  hosting_network: 35\n  unfamiliar_client: {full_ratio: 200}\n  no_history: 0\n"
    )
    signals = policy.risk.signals
    assert signals["impossible_travel"].weight == 60
    assert signals["impossible_travel"].params["tolerance_km"] == 50
    assert signals["impossible_travel"].params["min_elapsed"] == 600
    assert signals["hosting_network"].weight == 35
    assert signals["unfamiliar_client"].params == {"full_ratio": 200}
    assert signals["no_history"].weight == 0
    assert signals["new_network"].weight == 10


@pytest.mark.parametrize("key", ["pii", "action", "roles", "resource", "scopes", "signals"])
def test_an_empty_when_list_is_an_error(tmp_path: Path, key: str) -> None:
    text = (
        "version: 1\nlevels:\n  aal1: {acr: a}\npii:\n  ssn: {}\nrules:\n"
        f"  - name: r\n    when: {{{key}: []}}\n    require: {{level: aal1}}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert any(":8:" in e and "must not be empty" in e for e in caught.value.errors), (
        caught.value.errors
    )


def test_a_file_over_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    from piigate.policy.yamlnodes import MAX_FILE_BYTES

    def padded(size: int) -> str:  # the policy and one comment line, ``size`` bytes in all
        return BASE + "#" * (size - len(BASE) - 1) + "\n"

    at_limit = tmp_path / "at-limit.yaml"
    at_limit.write_text(padded(MAX_FILE_BYTES))
    assert at_limit.stat().st_size == MAX_FILE_BYTES
    assert load_policy(str(at_limit)).rules  # a valid policy, exactly at the limit

    over = tmp_path / "over.yaml"
    over.write_text(padded(MAX_FILE_BYTES + 1))
    with pytest.raises(PolicyError) as info:
        load_policy(str(over))
    assert info.value.errors == [
        f"{over}: too large ({MAX_FILE_BYTES + 1} bytes; the limit is {MAX_FILE_BYTES})"
    ]


def test_read_limited_reads_no_more_than_the_limit_of_an_endless_file() -> None:
    from piigate.policy.yamlnodes import FileTooLarge, read_limited

    with pytest.raises(FileTooLarge, match=r"^too large \(more than 64 bytes; the limit is 64\)$"):
        read_limited("/dev/zero", limit=64)
