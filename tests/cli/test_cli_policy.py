"""``piigate policy check | test | explain`` (CONTRACT §1, §3)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from cli_support import CASES, POLICY
from typer.testing import CliRunner

from piigate.cli import app

LOCATED = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): \S")


def write(path: Path, content: str) -> str:
    path.write_text(textwrap.dedent(content))
    return str(path)


def test_help_works_for_every_command(runner: CliRunner) -> None:
    for args in (
        [],
        ["policy"],
        ["policy", "check"],
        ["policy", "test"],
        ["policy", "explain"],
        ["serve"],
        ["audit", "verify"],
        ["users", "add"],
        ["keys", "create"],
        ["db", "upgrade"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_check_ok(runner: CliRunner) -> None:
    result = runner.invoke(app, ["policy", "check", str(POLICY)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{POLICY}: ok")
    assert "10 rules" in result.stdout


def test_check_reports_every_error_with_its_position(runner: CliRunner, tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        """\
        version: 1
        levels:
          aal1: {acr: "urn:piigate:aal1"}
        pii:
          ssn: {}
        rules:
          - name: r1
            when: {pii: [iban], action: [read]}
            require: {level: aal9}
          - name: r2
            when: {action: [fly]}
            deny: "no"
        """,
    )
    result = runner.invoke(app, ["policy", "check", path])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 3, lines
    for line in lines:
        match = LOCATED.match(line)
        assert match, line
        assert match["file"] == path
    positions = {(m["line"], m["col"]) for m in map(LOCATED.match, lines) if m}
    assert ("8", "18") in positions  # the unknown PII class 'iban'
    assert any(line.startswith(f"{path}:9:") and "aal9" in line for line in lines)
    assert any(line.startswith(f"{path}:11:") and "fly" in line for line in lines)


def test_check_yaml_syntax_error(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "version: 1\nlevels: [\n")
    result = runner.invoke(app, ["policy", "check", path])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert LOCATED.match(line) and line.startswith(path)


def test_check_profile_violation_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    text = POLICY.read_text().replace("restricted: true", "restricted: false")
    path = write(tmp_path / "nist.yaml", text)
    result = runner.invoke(app, ["policy", "check", path])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines and all(LOCATED.match(line) for line in lines)
    assert any("sms" in line.lower() or "restricted" in line for line in lines), lines


def test_policy_test_passes_the_example_cases(runner: CliRunner) -> None:
    result = runner.invoke(app, ["policy", "test", str(POLICY), str(CASES)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["PASS"] * 8
    assert "PASS  delete needs aal3" in lines
    assert lines[-1] == "8 passed, 0 failed"


def test_policy_test_fails_on_a_wrong_expectation(runner: CliRunner, tmp_path: Path) -> None:
    cases = write(
        tmp_path / "cases.yaml",
        """\
        - name: update ssn is allowed (wrong)
          request: {subject: {id: ann}, action: update, pii: [ssn]}
          expect: {outcome: allow}
        - name: phone read is allowed
          request: {subject: {id: ann}, action: read, pii: [phone]}
          expect: {outcome: allow, mask: []}
        - name: delete wants aal2 (wrong level)
          request: {subject: {id: ann}, action: delete, pii: [ssn]}
          expect: {outcome: step_up, level: aal2}
        """,
    )
    result = runner.invoke(app, ["policy", "test", str(POLICY), cases])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("FAIL  update ssn is allowed (wrong)")
    assert "step_up" in lines[0]
    assert lines[1] == "PASS  phone read is allowed"
    assert lines[2].startswith("FAIL  delete wants aal2 (wrong level)")
    assert lines[-1] == "1 passed, 2 failed"


def test_explain_scores_the_context_as_a_first_request(runner: CliRunner, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    context = {"ip": "1.1.1.1", "user_agent": "curl/8.4.0", "device_id": "d-9"}
    body = {"subject": {"id": "alice"}, "action": "read", "pii": ["phone"], "context": context}
    request.write_text(json.dumps(body))
    result = runner.invoke(app, ["policy", "explain", str(POLICY), "--request", str(request)])
    assert result.exit_code == 0, result.output
    risk = json.loads(result.stdout)["risk"]
    assert risk["score"] == 20
    assert risk["signals"] == [
        {"name": "no_history", "weight": 20, "detail": "no verified activity yet to compare with"}
    ]
    del body["context"]
    request.write_text(json.dumps(body))
    result = runner.invoke(app, ["policy", "explain", str(POLICY), "--request", str(request)])
    assert json.loads(result.stdout)["risk"] == {"score": 0, "signals": []}


def test_explain_prints_the_decision_as_json(runner: CliRunner, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps(
            {
                "subject": {"id": "alice", "roles": ["support"]},
                "session": {"acr": "urn:piigate:aal1"},
                "action": "update",
                "resource": {"type": "customer", "id": "42"},
                "pii": ["ssn"],
            }
        )
    )
    result = runner.invoke(app, ["policy", "explain", str(POLICY), "--request", str(request)])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["outcome"] == "step_up"
    assert decision["rules"] == ["edit-identity-numbers"]
    assert decision["required"]["level"] == "aal2"
    assert decision["required"]["max_age"] == 300
    assert decision["www_authenticate"].startswith(
        'Bearer error="insufficient_user_authentication"'
    )
    assert decision["policy"].startswith("sha256:")
    assert {"rule": "edit-identity-numbers", "status": "requires"}.items() <= decision["explain"][
        0
    ].items()


@pytest.mark.parametrize(
    ("request_json", "outcome"),
    [
        ({"subject": {"id": "a", "roles": ["support"]}, "action": "export", "pii": []}, "deny"),
        ({"subject": {"id": "a"}, "action": "read", "pii": ["ssn"]}, "allow"),
    ],
)
def test_explain_outcomes(
    runner: CliRunner, tmp_path: Path, request_json: dict[str, object], outcome: str
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(request_json))
    result = runner.invoke(app, ["policy", "explain", str(POLICY), "--request", str(request)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcome"] == outcome


def test_files_over_the_size_limit_are_refused_in_one_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    from piigate.policy.yamlnodes import MAX_FILE_BYTES

    def oversized(name: str, text: str) -> tuple[str, str]:
        """``text`` padded past the limit with trailing whitespace: still valid YAML and JSON."""
        path = tmp_path / name
        data = text.encode()
        path.write_bytes(data + b" " * (MAX_FILE_BYTES + 1 - len(data)))
        return str(
            path
        ), f"{path}: too large ({MAX_FILE_BYTES + 1} bytes; the limit is {MAX_FILE_BYTES})"

    policy, policy_error = oversized("policy.yaml", POLICY.read_text())
    for args in (["policy", "check", policy], ["policy", "test", policy, str(CASES)]):
        result = runner.invoke(app, args)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", policy_error + "\n")

    cases, cases_error = oversized("cases.yaml", CASES.read_text())
    result = runner.invoke(app, ["policy", "test", str(POLICY), cases])
    assert (result.exit_code, result.stderr) == (1, cases_error + "\n")

    body = json.dumps({"subject": {"id": "a"}, "action": "read", "pii": ["ssn"]})
    request, request_error = oversized("request.json", body)
    result = runner.invoke(app, ["policy", "explain", str(POLICY), "--request", request])
    assert (result.exit_code, result.stderr) == (1, f"piigate: error: {request_error}\n")
