"""``piigate scan postgres`` against the local PostgreSQL: labels, suspected marks, a catalog
that loads back, no sampled value anywhere in what it prints or writes, and its errors.

Each test builds its own uniquely named schemas (and role), dropped afterwards. The fake data is
generated: valid by the validators' rules, belonging to nobody."""

from __future__ import annotations

import random
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cli_support import POLICY, run_main, run_piigate
from psycopg import sql
from sqlalchemy import make_url
from stdnum import iban
from stdnum.us import ssn

from piigate.gateway.postgres.catalog import Catalog, TableName, read_catalog
from piigate.policy import load_policy
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_text

pytestmark = pytest.mark.postgres

ROWS = 60


@dataclass
class Db:
    url: str  # the admin's DSN
    schema: str
    hidden: str  # a schema the restricted role may not enter
    role: str
    values: list[str]  # every value written, to look for in the output

    def dsn(self, user: str | None = None) -> str:
        url = make_url(self.url).set(drivername="postgresql")
        if user is not None:
            url = url.set(username=user, password=None)
        return url.render_as_string(hide_password=False)

    def scan(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        schemas = ("--schema", self.schema, "--schema", self.hidden)
        return run_main(
            "scan", "postgres", self.dsn(user), *schemas, "--policy", str(POLICY), *args
        )


def _fake_rows(rnd: random.Random) -> list[tuple[str, ...]]:
    rows = []
    for i in range(ROWS):
        s = ""
        while not ssn.is_valid(s):
            s = f"{rnd.randint(1, 665):03d}-{rnd.randint(1, 99):02d}-{rnd.randint(1, 9999):04d}"
        body = f"{rnd.randint(10**17, 10**18 - 1)}"
        account = f"DE{iban.calc_check_digits('DE00' + body)}{body}"
        phone = f"+1 415 555 {rnd.randint(2000, 9999)}"
        address = f"{rnd.randint(1, 9999)} {rnd.choice(['Oak', 'Elm', 'Pine'])} Street, Springfield"
        note = f"caller confirmed {s} by phone" if i % 10 == 0 else f"ticket {rnd.randint(1, 999)}"
        rows.append((s, phone, account, address, note))
    return rows


@pytest.fixture
def db(pg_admin_url: str) -> Iterator[Db]:
    tag = secrets.token_hex(4)
    schema, hidden, role = f"scan_t_{tag}", f"scan_h_{tag}", f"scan_r_{tag}"
    admin = make_url(pg_admin_url).set(drivername="postgresql").render_as_string(False)
    rows = _fake_rows(random.Random(tag))
    with psycopg.connect(admin, autocommit=True) as conn:
        s, h, r = sql.Identifier(schema), sql.Identifier(hidden), sql.Identifier(role)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(h))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
        conn.execute(
            sql.SQL("""
            CREATE TABLE {s}.customers (
                id serial PRIMARY KEY, ssn text, phone text, iban text, address text,
                notes text, active boolean DEFAULT true);
            CREATE TABLE {s}.orders (id serial PRIMARY KEY, status text, amount numeric);
            CREATE TABLE {s}.secret (id int, passport_number text);
            CREATE TABLE {s}."Contacts" ("HomePhone" text);
            CREATE TABLE {h}.vault (ssn text);
            GRANT USAGE ON SCHEMA {s} TO {r};
            GRANT SELECT ON {s}.customers, {s}.orders, {s}."Contacts" TO {r};
            GRANT SELECT ON {h}.vault TO {r};
        """).format(s=s, h=h, r=r)
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {}.customers (ssn, phone, iban, address, notes) "
                    "VALUES (%s, %s, %s, %s, %s)"
                ).format(s),
                rows,
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.orders (status, amount) SELECT 'open', g FROM "
                    "generate_series(1, 20) g"
                ).format(s)
            )
            cur.execute(sql.SQL("""INSERT INTO {}.secret VALUES (1, 'X12345678')""").format(s))
            cur.execute(sql.SQL("""INSERT INTO {}.vault VALUES ('078-05-1121')""").format(h))
        conn.execute("ANALYZE")
    values = [v for row in rows for v in row] + ["X12345678", "078-05-1121"]
    try:
        yield Db(admin, schema, hidden, role, values)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in (schema, hidden):
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _catalog(text: str) -> Catalog:
    errors = YamlErrors("catalog.yaml")
    node = compose_text(text, errors)
    assert node is not None, errors.messages
    catalog = read_catalog(NodeReader(errors), node, load_policy(str(POLICY)))
    assert not errors.messages, errors.messages
    return catalog


def _assert_no_value(db: Db, *texts: str) -> None:
    for value in db.values:
        # The whole value, and its identifying part (an SSN without its dashes, say).
        parts = {value, value.replace("-", "").replace(" ", "")}
        for text in texts:
            leaked = [p for p in parts if p in text]
            assert not leaked, "a sampled value was printed"


def test_scan_to_stdout(db: Db) -> None:
    result = db.scan()
    assert result.returncode == 0, result.stderr
    catalog = _catalog(result.stdout)
    customers = catalog.table(TableName(db.schema, "customers"))
    assert {name: c.pii for name, c in customers.items()} == {
        "ssn": "ssn",
        "phone": "phone",
        "iban": "bank_account",
        "address": "mailing_address",
        "notes": "ssn",
    }
    assert [n for n, c in customers.items() if c.suspected] == ["notes"]
    assert customers["ssn"].confidence == 1.0
    assert f"# name matches ssn; {ROWS}/{ROWS} sampled values are valid US SSNs\n" in result.stdout
    assert f"  # 6/{ROWS} sampled values contain a valid US SSN\n" in result.stdout
    assert f"# {db.schema}.orders: no PII found (3 columns, 20 rows sampled)" in result.stdout
    # A quoted table and column, labelled by name (the only value is NULL): suspected.
    contacts = catalog.table(TableName(db.schema, "Contacts"))
    assert contacts["HomePhone"].suspected and contacts["HomePhone"].pii == "phone"
    assert f'"{db.schema}.\\"Contacts\\"":' in result.stdout
    assert catalog.pii_of(TableName(db.hidden, "vault"), "ssn") == "ssn"
    # The example policy has no email, credit_card or date_of_birth class.
    for skipped in ("email", "credit_card", "date_of_birth"):
        assert f"the policy has no PII class '{skipped}': not looked for" in result.stderr
    assert "5 tables" in result.stderr.splitlines()[-1]
    _assert_no_value(db, result.stdout, result.stderr)


def test_scan_to_a_file(db: Db, tmp_path: Path) -> None:
    out = tmp_path / "catalog.yaml"
    result = db.scan("--out", str(out), "--sample", "10")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"catalog written to {out}" in result.stderr
    text = out.read_text(encoding="utf-8")
    assert "up to 10 rows per table" in text
    assert "10/10 sampled values are valid US SSNs" in text
    assert _catalog(text).pii_of(TableName(db.schema, "customers"), "iban") == "bank_account"
    _assert_no_value(db, text, result.stderr)


def test_tables_the_user_may_not_read_are_labelled_by_name_with_a_warning(db: Db) -> None:
    result = db.scan(user=db.role)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"piigate: warning: {db.hidden}.vault: values not read (permission denied): "
        "labelled by column name only",
        f"piigate: warning: {db.schema}.secret: values not read (permission denied): "
        "labelled by column name only",
    ]
    catalog = _catalog(result.stdout)
    secret = catalog.table(TableName(db.schema, "secret"))["passport_number"]
    assert (secret.pii, secret.suspected) == ("passport", True)
    assert catalog.table(TableName(db.hidden, "vault"))["ssn"].suspected
    assert not catalog.table(TableName(db.schema, "customers"))["ssn"].suspected
    _assert_no_value(db, result.stdout, result.stderr)


def test_a_locked_table_is_skipped_after_the_timeout(db: Db) -> None:
    with psycopg.connect(db.url) as locker:
        locker.execute(
            sql.SQL("LOCK TABLE {}.orders IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(db.schema)
            )
        )
        result = db.scan("--timeout", "0.5")
        locker.rollback()
    assert result.returncode == 0, result.stderr
    assert f"{db.schema}.orders: values not read (locked by another session" in result.stderr, (
        result.stderr
    )
    assert "customers:" in result.stdout


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://postgres@127.0.0.1:1/test", "connection refused"),
        ("host=127.0.0.1 port=5432 user=postgres dbname=scan_no_such_db", "does not exist"),
        ("postgresql://postgres:s3cret-pw@127.0.0.1:1/test", "connection refused"),
        ("host=x password=s3cret-pw port", "invalid DSN"),
    ],
)
def test_connection_errors_are_one_line(dsn: str, message: str) -> None:
    result = run_main("scan", "postgres", dsn, "--policy", str(POLICY))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("piigate: error: ") and message in lines[-1], lines
    assert "Traceback" not in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_without_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIIGATE_POLICY", raising=False)
    result = run_main("scan", "postgres", "postgresql://postgres@127.0.0.1:1/test")
    assert result.returncode == 1
    assert result.stderr.startswith("piigate: error: no policy: pass --policy FILE")


def test_bad_sample_size_is_a_usage_error() -> None:
    result = run_main("scan", "postgres", "x", "--sample", "0", "--policy", str(POLICY))
    assert result.returncode == 2
    assert "--sample" in result.stderr


def test_unknown_region() -> None:
    result = run_main("scan", "postgres", "x", "--region", "QQ", "--policy", str(POLICY))
    assert result.returncode == 1
    assert result.stderr == (
        "piigate: error: --region 'QQ' is not a country code phonenumbers knows (US, GB, DE, ...)\n"
    )


def test_the_console_script(db: Db) -> None:
    result = run_piigate(
        "scan", "postgres", db.dsn(), "--schema", db.schema, "--policy", str(POLICY)
    )
    assert result.returncode == 0, result.stderr
    assert _catalog(result.stdout).pii_of(TableName(db.schema, "customers"), "phone") == "phone"
    _assert_no_value(db, result.stdout, result.stderr)


def test_a_small_sample_of_a_larger_table(db: Db) -> None:
    # 60 rows (ANALYZEd) against --sample 2: TABLESAMPLE BERNOULLI, or LIMIT if it came up short.
    result = db.scan("--sample", "2")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert (
        "# name matches ssn; 2/2 sampled values are valid US SSNs; too few values" in result.stdout
    )
    assert _catalog(result.stdout).table(TableName(db.schema, "customers"))["ssn"].suspected
    _assert_no_value(db, result.stdout, result.stderr)
