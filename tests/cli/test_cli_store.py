"""Store commands on SQLite and PostgreSQL: ``users add``, ``keys create``, ``audit verify``,
``db upgrade``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from cli_support import sql
from typer.testing import CliRunner

from piigate.cli import app

PASSWORD = "correct horse battery staple"


def test_db_upgrade_is_idempotent(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    first = runner.invoke(app, ["db", "upgrade"], env=cli_env)
    assert first.exit_code == 0, first.output
    match = re.fullmatch(r"database at revision (\S+)\n", first.stdout)
    assert match and match[1] != "None"
    again = runner.invoke(app, ["db", "upgrade"], env=cli_env)
    assert again.exit_code == 0 and again.stdout == first.stdout
    tables = {"audit_events", "audit_head", "api_keys", "users", "challenges", "counters"}
    for table in tables:
        assert sql(database_url, f"SELECT COUNT(*) FROM {table}") is not None
    (version,) = sql(database_url, "SELECT version_num FROM alembic_version")
    assert version[0] == match[1]


def test_users_add_reads_the_password_from_stdin(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    result = runner.invoke(
        app,
        ["users", "add", "alice", "--password-stdin", "--role", "support", "--role", "admin"],
        env=cli_env,
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "user alice added with roles admin, support\n"
    assert PASSWORD not in result.output
    ((password_hash, roles),) = sql(
        database_url, "SELECT password_hash, roles FROM users WHERE username = 'alice'"
    )
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    assert (json.loads(roles) if isinstance(roles, str) else roles) == ["admin", "support"]
    events = sql(database_url, "SELECT type, subject_id, data FROM audit_events")
    assert [(t, s) for t, s, _ in events] == [("user_added", "alice")]
    assert PASSWORD not in str(events)


def test_users_add_refuses_a_short_password(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    assert runner.invoke(app, ["db", "upgrade"], env=cli_env).exit_code == 0
    result = runner.invoke(
        app, ["users", "add", "bob", "--password-stdin"], env=cli_env, input="short\n"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("piigate: error:")
    assert "at least 8 characters" in result.stderr
    assert sql(database_url, "SELECT username FROM users") == []


def test_keys_create_prints_the_key_once_and_stores_its_hash(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    result = runner.invoke(
        app, ["keys", "create", "billing-app", "--scope", "decisions"], env=cli_env
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert re.fullmatch(r"pgk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key), result.stdout
    assert "shown once" in result.stderr
    assert key not in result.stderr
    rows = sql(database_url, "SELECT id, name, key_hash, scopes FROM api_keys")
    assert len(rows) == 1
    key_id, name, key_hash, scopes = rows[0]
    assert name == "billing-app"
    assert key_id == "key_" + key.split("_")[1]
    assert bytes(key_hash) == hashlib.sha256(key.encode()).digest()
    assert "decisions" in str(scopes)
    everything = str(sql(database_url, "SELECT * FROM api_keys")) + str(
        sql(database_url, "SELECT * FROM audit_events")
    )
    assert key not in everything and key.split("_", 2)[2] not in everything
    # A second key gets a different secret; the same name is refused.
    other = runner.invoke(app, ["keys", "create", "other-app"], env=cli_env)
    assert other.exit_code == 0 and other.stdout.strip() != key


def test_audit_verify_ok_then_names_the_tampered_seq(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    assert runner.invoke(app, ["db", "upgrade"], env=cli_env).exit_code == 0
    empty = runner.invoke(app, ["audit", "verify"], env=cli_env)
    assert empty.exit_code == 0, empty.output
    assert empty.stdout == "ok 0 events\n"
    for name in ("a", "b", "c"):
        assert runner.invoke(app, ["keys", "create", name], env=cli_env).exit_code == 0
    result = runner.invoke(app, ["audit", "verify"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok 3 events\n"

    sql(
        database_url,
        "UPDATE audit_events SET data = :data WHERE seq = 2",
        data='{"name":"mallory","roles":["admin"],"scopes":[]}',
    )
    broken = runner.invoke(app, ["audit", "verify"], env=cli_env)
    assert broken.exit_code == 1
    assert broken.stdout == ""
    (line,) = broken.stderr.strip().splitlines()
    assert line.startswith("piigate: error:")
    assert re.search(r"\bseq 2\b", line), line


def test_audit_verify_refuses_stored_data_that_is_not_canonical(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    for name in ("a", "b", "c"):
        assert runner.invoke(app, ["keys", "create", name], env=cli_env).exit_code == 0
    ((original,),) = sql(database_url, "SELECT data FROM audit_events WHERE seq = 2")
    assert original.startswith('{"name":"b",')  # the column keeps the bytes written (text)
    # Each parses back to the stored value; SQL readers see another value or other bytes.
    rewrites = {
        "leading duplicate key": '{"name":"mallory",' + original[1:],
        "extra whitespace": json.dumps(json.loads(original), sort_keys=True),
        "reordered keys": json.dumps(
            dict(reversed(json.loads(original).items())), separators=(",", ":")
        ),
    }
    for how, text in rewrites.items():
        assert json.loads(text) == json.loads(original) and text != original, how
        sql(database_url, "UPDATE audit_events SET data = :data WHERE seq = 2", data=text)
        broken = runner.invoke(app, ["audit", "verify"], env=cli_env)
        assert broken.exit_code == 1, (how, broken.output)
        (line,) = broken.stderr.strip().splitlines()
        assert line.startswith("piigate: error: audit chain broken at seq 2:"), (how, line)
        assert "canonical" in line, (how, line)
    sql(database_url, "UPDATE audit_events SET data = :data WHERE seq = 2", data=original)
    intact = runner.invoke(app, ["audit", "verify"], env=cli_env)
    assert intact.exit_code == 0 and intact.stdout == "ok 3 events\n", intact.output


def test_audit_verify_detects_a_deleted_tail(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    for name in ("a", "b", "c"):
        assert runner.invoke(app, ["keys", "create", name], env=cli_env).exit_code == 0
    sql(database_url, "DELETE FROM audit_events WHERE seq = 3")
    broken = runner.invoke(app, ["audit", "verify"], env=cli_env)
    assert broken.exit_code == 1
    assert broken.stderr.startswith("piigate: error: audit chain broken")


def test_audit_verify_refuses_a_missing_store(runner: CliRunner, tmp_path: Path) -> None:
    env = {"PIIGATE_DATA_DIR": str(tmp_path), "PIIGATE_DATABASE_URL": ""}
    result = runner.invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("piigate: error: no piigate database under")
    assert not list(tmp_path.iterdir())  # and it created nothing
