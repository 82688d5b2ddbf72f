"""``piigate demo`` end to end: started as a process on free ports with a data directory of its
own, its printed curl walkthrough run step by step in one shell (``piigate demo code`` answering
the TOTP step-ups), each step's answers checked against what the walkthrough says to expect and
what the step shows: masking, a TOTP step-up, a transfer approved for one request only, a bulk
delete tripping the risk engine, the audit trail's early warning, and (when PostgreSQL is
reachable) the SSN masked through the PostgreSQL gateway. Then Ctrl-C, and a second start on
the same data: the same users."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from demo_support import Shell, Step, environment, free_base_port, parse_walkthrough, running_demo
from sqlalchemy import make_url

from piigate.demo.customers import sample_customers
from services_support import require_services, unavailable

pytestmark = pytest.mark.slow

_CALL = re.compile(r"^(\d{3}) (.*)$")


@pytest.fixture
def demo_database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str] | None]:
    """(server URL, database name) for the demo's PostgreSQL side, the database dropped
    afterwards; None when no server is reachable (and services are not required)."""
    try:
        url = request.getfixturevalue("pg_admin_url")
    except pytest.skip.Exception:
        if require_services():
            raise
        yield None
        return
    # A libpq URL whatever driver the test URL names (the demo reads postgresql:// only).
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    database = f"piigate_t_demo_{secrets.token_hex(4)}"
    yield admin, database
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_the_printed_walkthrough_runs(
    tmp_path: Path, demo_database: tuple[str, str] | None
) -> None:
    if shutil.which("curl") is None:
        unavailable("the walkthrough runs curl, which is not installed")
    port, data_dir = free_base_port(), tmp_path / "demo-data"
    if demo_database is not None:
        server, database = demo_database
        env = environment(PIIGATE_DEMO_POSTGRES_URL=server, PIIGATE_DEMO_POSTGRES_DB=database)
    else:  # nothing listens there: the demo must say so and go on
        nowhere = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
        env = environment(PIIGATE_DEMO_POSTGRES_URL=nowhere)
    with running_demo(env, port, data_dir) as demo:
        steps = parse_walkthrough(demo.printed)
        assert [s.key for s in steps][:6] == [
            "setup",
            "masking",
            "totp-step-up",
            "bound-transfer",
            "bulk-delete",
            "audit",
        ]
        shell = Shell(env)
        try:
            outputs = {step.key: shell.run(step.text) for step in _runnable(steps)}
            [token] = shell.run('echo "$TOKEN"')
        finally:
            shell.close()
        by_key = {step.key: step for step in steps}
        _check_masking(outputs["masking"], by_key["masking"])
        _check_statuses(outputs["totp-step-up"], by_key["totp-step-up"])
        _check_transfer(outputs["bound-transfer"], by_key["bound-transfer"])
        _check_bulk_delete(outputs["bulk-delete"])
        audit = _calls(outputs["audit"])
        assert [status for status, _ in audit] == by_key["audit"].expected_statuses() == [200]
        warnings = json.loads(audit[0][1])["events"]
        assert any(e["data"]["signal"] == "bulk_destructive" for e in warnings), warnings
        if demo_database is None:
            assert "PostgreSQL: not reachable at" in demo.printed
            assert "postgres" not in by_key
        else:
            assert "postgres" in by_key
            if "postgres" in outputs:  # psql is installed
                postgres = "\n".join(outputs["postgres"])
                assert "***-**-3456" in postgres and "900-12-3456" not in postgres, postgres
            _check_postgres(port + 3, demo_database[1], token)
        passwords = _passwords(demo.printed)
    assert demo.proc.returncode == 0, "".join(demo.rest)
    assert "Traceback" not in demo.printed + "".join(demo.rest)
    for offset in range(4):  # nothing listens any more (connections may be in TIME_WAIT)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port + offset))
            sock.listen()

    # The data directory is kept: a second start has the same users.
    with running_demo(env, port, data_dir) as again:
        assert len(passwords) == 2 and _passwords(again.printed) == passwords


def _runnable(steps: list[Step]) -> list[Step]:
    """The steps, but the PostgreSQL one when psql is not installed (psycopg checks it)."""
    return [s for s in steps if s.key != "postgres" or shutil.which("psql") is not None]


def _check_postgres(port: int, database: str, token: str) -> None:
    """A query through the PostgreSQL gateway, with the demo user's token as the password."""
    dsn = f"host=127.0.0.1 port={port} dbname={database} user=demo"
    with psycopg.connect(dsn, password=token, sslmode="disable") as conn:
        rows = conn.execute("SELECT id, ssn FROM customers WHERE id <= 3 ORDER BY id").fetchall()
    assert rows == [(1, "***-**-3456"), (2, "***-**-4321"), (3, "***-**-2222")]


def _calls(lines: list[str]) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2)) for line in lines if (m := _CALL.match(line))]


def _check_statuses(lines: list[str], step: Step) -> list[tuple[int, str]]:
    calls = _calls(lines)
    assert [status for status, _ in calls] == step.expected_statuses(), lines
    return calls


def _check_masking(lines: list[str], step: Step) -> None:
    [(_, body)] = _check_statuses(lines, step)
    record = json.loads(body)
    clear = sample_customers()[record["id"]]  # as the API behind the gateway holds it
    assert record["ssn"] == "***-**-" + clear["ssn"][-4:] != clear["ssn"]
    assert record["bank"]["account"] != clear["bank"]["account"]
    assert record["passport_number"] != clear["passport_number"]


def _check_transfer(lines: list[str], step: Step) -> None:
    calls = _check_statuses(lines, step)
    asked, _, other, done, replayed = (json.loads(body) for _, body in calls)
    assert asked["required"]["max_age"] == 0
    assert other["code"] == replayed["code"] == "insufficient_user_authentication"
    assert done["amount"] == "25000.00"


def _check_bulk_delete(lines: list[str]) -> None:
    statuses = [status for status, _ in _calls(lines)]
    assert statuses[-1] == 401 and set(statuses[:-1]) == {204}, lines
    tripped = json.loads(_calls(lines)[-1][1])
    assert tripped["required"]["level"] == "aal3"
    assert tripped["required"]["methods"] == ["webauthn"]


def _passwords(printed: str) -> list[str]:
    return re.findall(r"^\s+(?:demo|admin)\s+/ (\S+)", printed, re.MULTILINE)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
