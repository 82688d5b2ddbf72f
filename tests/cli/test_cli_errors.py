"""Bad input: one clear line on stderr, a non-zero exit, never a traceback (CONTRACT §1).

File and request errors go through ``main`` in-process; store and serve errors through the real
console script in a subprocess."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import pytest
from cli_support import POLICY, run_main, run_piigate
from sqlalchemy import make_url

from piigate.cli import main

ONE_LINE = re.compile(r"^(piigate: error: .+|.+:\d+:\d+: .+)$")


def assert_clean_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert ONE_LINE.match(lines[0]), lines[0]
    return lines[0]


def test_missing_policy_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    line = assert_clean_failure(run_main("policy", "check", missing))
    assert line.startswith(f"{missing}:1:1: ")


def test_missing_cases_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "cases.yaml")
    line = assert_clean_failure(run_main("policy", "test", str(POLICY), missing))
    assert missing in line


def test_missing_and_invalid_request_json(tmp_path: Path) -> None:
    missing = str(tmp_path / "request.json")
    line = assert_clean_failure(run_main("policy", "explain", str(POLICY), "--request", missing))
    assert line.startswith(f"piigate: error: {missing}")

    broken = tmp_path / "broken.json"
    broken.write_text('{"subject": {"id": "alice"},\n "action": ')
    line = assert_clean_failure(
        run_main("policy", "explain", str(POLICY), "--request", str(broken))
    )
    assert line.startswith(f"piigate: error: {broken}:2:")
    assert "invalid JSON" in line


@pytest.mark.parametrize(
    "request_text",
    [
        '{"subject": {"id": "alice"}, "action": "fly"}',
        '{"subject": {"id": "alice"}, "action": "read", "pii": ["123-45-6789"]}',
        "[1, 2]",
    ],
)
def test_request_that_is_not_a_decision_request(tmp_path: Path, request_text: str) -> None:
    request = tmp_path / "request.json"
    request.write_text(request_text)
    line = assert_clean_failure(
        run_main("policy", "explain", str(POLICY), "--request", str(request))
    )
    assert line.startswith(f"piigate: error: {request}: ")
    assert "123-45-6789" not in line


def test_wrong_expectation_file_format(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("- name: x\n  request: {subject: {id: a}, action: fly}\n  expect: {}\n")
    result = run_main("policy", "test", str(POLICY), str(cases))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert all(ONE_LINE.match(line) for line in result.stderr.strip().splitlines())
    assert str(cases) in result.stderr


def test_bad_database_url(tmp_path: Path) -> None:
    env = {"PIIGATE_DATA_DIR": str(tmp_path), "PIIGATE_DATABASE_URL": "mysql://db/piigate"}
    line = assert_clean_failure(run_piigate("audit", "verify", env=env))
    assert line.startswith("piigate: error:") and "database URL" in line


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("not a url", "Could not parse"),
        ("sqlite://", "in-memory SQLite"),
        ("mysql://db/piigate", "unsupported database URL scheme"),
    ],
)
@pytest.mark.parametrize("command", [["audit", "verify"], ["sms", "outbox"], ["db", "upgrade"]])
def test_bad_database_url_in_every_store_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, reason: str, command: list[str]
) -> None:
    monkeypatch.setenv("PIIGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PIIGATE_DATABASE_URL", url)
    line = assert_clean_failure(run_main(*command))
    assert line.startswith("piigate: error: invalid database URL: ") and reason in line


def test_unreachable_database(tmp_path: Path) -> None:
    env = {
        "PIIGATE_DATA_DIR": str(tmp_path),
        "PIIGATE_DATABASE_URL": "postgresql://postgres:s3cret@127.0.0.1:1/piigate",
    }
    line = assert_clean_failure(run_piigate("audit", "verify", env=env))
    assert line == (
        "piigate: error: the store postgresql://postgres:***@127.0.0.1:1/piigate is unavailable: "
        "cannot connect (ConnectionRefusedError)"
    )


def test_missing_database_is_named_without_its_password(tmp_path: Path, pg_admin_url: str) -> None:
    """The store is named, its password never; and why, without the driver's own message."""
    url = make_url(pg_admin_url).set(password="s3cret", database="piigate_no_such_db")
    shown = url.render_as_string(hide_password=True)
    env = {
        "PIIGATE_DATA_DIR": str(tmp_path),
        "PIIGATE_DATABASE_URL": url.render_as_string(hide_password=False) + "?password=s3cret",
    }
    line = assert_clean_failure(run_piigate("audit", "verify", env=env))
    assert line == f"piigate: error: the store {shown} is unavailable: the database does not exist"
    assert "s3cret" not in line


def test_duplicate_user(tmp_path: Path) -> None:
    env = {"PIIGATE_DATA_DIR": str(tmp_path)}
    args = ("users", "add", "alice", "--password-stdin")
    first = run_piigate(*args, env=env, stdin="correct horse battery\n")
    assert first.returncode == 0, first.stderr
    line = assert_clean_failure(run_piigate(*args, env=env, stdin="another good password\n"))
    assert line == "piigate: error: that username is taken"


def test_serve_refuses_a_bad_policy_before_binding(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(POLICY.read_text().replace("level: aal3, max_age: 0", "level: aal7"))
    env = {"PIIGATE_DATA_DIR": str(tmp_path)}
    result = run_piigate("serve", "--config", str(bad), "--port", "1", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"{bad}:") for line in lines), lines


def test_serve_refuses_a_policy_file_over_the_size_limit(tmp_path: Path) -> None:
    from piigate.policy.yamlnodes import MAX_FILE_BYTES

    big = tmp_path / "policy.yaml"
    big.write_bytes(POLICY.read_bytes().ljust(MAX_FILE_BYTES + 1))  # valid YAML, too large
    env = {"PIIGATE_DATA_DIR": str(tmp_path / "data"), "PIIGATE_POLICY": str(big)}
    with socket.socket() as taken:  # were the file read, the server would fail to bind, not hang
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_piigate("serve", "--port", port, env=env)
    assert result.returncode == 1
    assert result.stderr == (
        f"{big}: too large ({MAX_FILE_BYTES + 1} bytes; the limit is {MAX_FILE_BYTES})\n"
    )


def test_serve_without_a_policy(tmp_path: Path) -> None:
    env = {"PIIGATE_DATA_DIR": str(tmp_path), "PIIGATE_POLICY": ""}
    line = assert_clean_failure(run_piigate("serve", env=env))
    assert "no policy" in line


def test_missing_config_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "piigate.yaml")
    line = assert_clean_failure(run_main("audit", "verify", "--config", missing))
    assert line.startswith(f"{missing}:1:1: ")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope"], "piigate: error: No such command 'nope'."),
        (["policy", "check"], "piigate: error: Missing argument 'file'."),
        (["serve", "--port", "abc"], "piigate: error: Invalid value for '--port'"),
    ],
)
def test_usage_errors_are_one_line(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught, patch.object(sys, "argv", ["piigate", *args]):
        main()
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(expected)
