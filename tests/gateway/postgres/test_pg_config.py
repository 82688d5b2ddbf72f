"""The ``gateway.postgres`` section (``config``): a full section, its defaults, the upstream URL
(its password never shown), the catalog inline or in a file, TLS files, and every problem as
``FILE:LINE:COL`` in one ``GatewayConfigError``."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from pg_gateway_support import POLICY

from piigate.gateway.http.config import GatewayConfigError
from piigate.gateway.http.masking import KeepLast, Replace
from piigate.gateway.postgres.catalog import TableName
from piigate.gateway.postgres.config import (
    DEFAULT_LISTEN,
    PostgresGatewayConfig,
    load_postgres_config,
    load_postgres_config_text,
    parse_upstream,
)
from piigate.policy.loader import load_policy_text
from piigate.policy.model import Policy

SECRET = "s3cr3t-Pa55"
CUSTOMERS = TableName("public", "customers")
POSITION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): ")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy_text(POLICY)


def _load(policy: Policy, body: str, **kwargs: str) -> PostgresGatewayConfig:
    text = "gateway:\n  postgres:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return load_postgres_config_text(text, policy, **kwargs)


def _errors(policy: Policy, body: str, **kwargs: str) -> list[str]:
    with pytest.raises(GatewayConfigError) as caught:
        _load(policy, body, **kwargs)
    for line in caught.value.errors:
        assert POSITION.match(line), line
    return caught.value.errors


def _where(errors: list[str], text: str) -> tuple[str, int, int]:
    [line] = [e for e in errors if text in e]
    found = POSITION.match(line)
    assert found is not None
    return found["file"], int(found["line"]), int(found["col"])


MINIMAL = """\
upstream: postgresql://svc@db.internal/app
catalog: {public.customers: {ssn: ssn}}
"""


def test_a_full_section(policy: Policy, tmp_path: Path) -> None:
    (tmp_path / "server.crt").write_text("cert")
    (tmp_path / "server.key").write_text("key")
    body = f"""\
    listen: 0.0.0.0:7432
    upstream: postgresql://piigate_svc:{SECRET}@db.internal:5433/app
    approval_wait: 2m
    catalog:
      public.customers: {{ssn: ssn, phone: phone, address: {{class: mailing_address}}}}
    masking: {{ssn: {{keep_last: 2}}, phone: whole}}
    tls: {{cert: server.crt, key: server.key}}
    identity: {{issuer: https://idp.example.com, audience: piigate, jwks_url: https://idp.example.com/jwks}}
    public_url: https://piigate.example.com/
    """
    config = _load(policy, body, source="gw.yaml", base=str(tmp_path))
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 7432)
    up = config.upstream
    assert (up.host, up.port, up.user, up.database, up.password) == (
        "db.internal",
        5433,
        "piigate_svc",
        "app",
        SECRET,
    )
    assert config.approval_wait == 120.0
    assert config.catalog.pii_of(CUSTOMERS, "address") == "mailing_address"
    assert config.catalog.classes() == {"ssn", "phone", "mailing_address"}
    assert config.masks["ssn"] == KeepLast(2) and config.masks["phone"] == Replace()
    assert config.masks["bank_account"] == KeepLast(4)  # every class of the policy has one
    assert config.tls is not None
    assert config.tls.cert == str(tmp_path / "server.crt")
    assert config.tls.key == str(tmp_path / "server.key")
    assert config.identity is not None and config.identity.audience == "piigate"
    assert config.public_url == "https://piigate.example.com"
    assert config.source == "gw.yaml"


def test_defaults(policy: Policy) -> None:
    config = _load(policy, MINIMAL)
    assert (config.listen_host, config.listen_port) == DEFAULT_LISTEN == ("127.0.0.1", 6432)
    assert config.approval_wait == 60.0
    assert config.upstream.port == 5432 and config.upstream.password is None
    assert config.tls is None and config.identity is None and config.public_url is None
    assert config.masks["ssn"] == KeepLast(4) and config.masks["mailing_address"] == Replace()


def test_upstream_urls() -> None:
    dsn = parse_upstream("postgres://alice@localhost", env={})
    assert (dsn.host, dsn.port, dsn.user, dsn.database, dsn.password) == (
        "localhost",
        5432,
        "alice",
        "alice",  # no database: the user's, as libpq does
        None,
    )
    dsn = parse_upstream("postgresql://a%40b:p%2Fw@[::1]:6000/my%20db", env={})
    assert (dsn.host, dsn.port, dsn.user, dsn.database, dsn.password) == (
        "::1",
        6000,
        "a@b",
        "my db",
        "p/w",
    )


def test_the_password_may_come_from_the_environment() -> None:
    env = {"PIIGATE_PG_UPSTREAM_PASSWORD": SECRET}
    assert parse_upstream("postgresql://svc@db/app", env=env).password == SECRET
    # The URL's own password wins; an empty variable is no password.
    assert parse_upstream("postgresql://svc:other@db/app", env=env).password == "other"
    assert parse_upstream("postgresql://svc@db/app", env={"PIIGATE_PG_UPSTREAM_PASSWORD": ""}) == (
        parse_upstream("postgresql://svc@db/app", env={})
    )


def test_the_password_is_never_shown(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = parse_upstream(f"postgresql://svc:{SECRET}@db:5432/app", env={})
    for shown in (repr(dsn), str(dsn), dsn.display()):
        assert SECRET not in shown
    assert dsn.display() == "postgresql://svc@db:5432/app"
    monkeypatch.setenv("PIIGATE_PG_UPSTREAM_PASSWORD", SECRET)
    config = _load(policy, MINIMAL)
    assert config.upstream.password == SECRET
    assert SECRET not in repr(config) and SECRET not in config.upstream_display


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://svc@db/app", "postgresql://"),
        ("postgresql://db/app", "needs a user and a host"),
        ("postgresql://svc@/app", "needs a user and a host"),
        (f"postgresql://svc:{SECRET}@db/app?sslmode=require", "no query"),
        (f"postgresql://svc:{SECRET}@db:99999/app", "bad port"),
        (f"postgresql://svc:{SECRET}@db:port/app", "bad port"),
    ],
)
def test_a_bad_upstream_is_refused_without_its_password(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_upstream(url, env={})
    assert SECRET not in str(caught.value)


def test_a_bad_upstream_in_the_file_is_reported_without_its_password(policy: Policy) -> None:
    body = f"upstream: postgresql://svc:{SECRET}@db:port/app\ncatalog: {{}}\n"
    errors = _errors(policy, body, source="gw.yaml")
    assert _where(errors, "upstream") == ("gw.yaml", 3, 15)
    assert SECRET not in "\n".join(errors)


def test_approval_wait_is_at_most_ten_minutes(policy: Policy) -> None:
    assert _load(policy, MINIMAL + "approval_wait: 10m\n").approval_wait == 600.0
    assert _load(policy, MINIMAL + "approval_wait: 0s\n").approval_wait == 0.0
    errors = _errors(policy, MINIMAL + "approval_wait: 11m\n", source="gw.yaml")
    assert _where(errors, "at most 10m") == ("gw.yaml", 5, 20)
    assert _errors(policy, MINIMAL + "approval_wait: soon\n")


def test_workers(policy: Policy) -> None:
    assert _load(policy, MINIMAL).workers == 1
    assert _load(policy, MINIMAL + "workers: 4\n").workers == 4
    errors = _errors(policy, MINIMAL + "workers: 0\n", source="gw.yaml")
    assert _where(errors, "workers must be between 1 and 64") == ("gw.yaml", 5, 14)
    assert _errors(policy, MINIMAL + "workers: many\n")


def test_exactly_one_of_catalog_and_catalog_file(policy: Policy) -> None:
    neither = _errors(policy, "upstream: postgresql://svc@db/app\n", source="gw.yaml")
    assert _where(neither, "exactly one of catalog or catalog_file") == ("gw.yaml", 3, 5)
    both = MINIMAL + "catalog_file: catalog.yaml\n"
    assert any("exactly one" in e for e in _errors(policy, both))


def test_a_relative_catalog_file_is_read_from_the_config_files_directory(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pii").mkdir()
    (tmp_path / "pii" / "catalog.yaml").write_text("public.customers:\n  ssn: ssn\n  tel: phone\n")
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(
        "gateway:\n  postgres:\n"
        "    upstream: postgresql://svc@db/app\n"
        "    catalog_file: pii/catalog.yaml\n"
    )
    monkeypatch.chdir("/")
    config = load_postgres_config(str(config_file), policy)
    assert config.catalog.pii_of(CUSTOMERS, "tel") == "phone"
    assert config.source == str(config_file)


def test_problems_in_the_catalog_file_are_reported_at_their_place(
    policy: Policy, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("public.customers:\n  ssn: ssn\n  iris: retina_scan\nnot a table!: {}\n")
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(
        "gateway:\n  postgres:\n"
        "    upstream: postgresql://svc@db/app\n"
        "    catalog_file: catalog.yaml\n"
    )
    with pytest.raises(GatewayConfigError) as caught:
        load_postgres_config(str(config_file), policy)
    errors = caught.value.errors
    assert _where(errors, "retina_scan") == (str(catalog), 3, 9)
    assert _where(errors, "not a table") == (str(catalog), 4, 1)
    assert _where(errors, "the catalog file has problems") == (str(config_file), 4, 19)


def test_a_missing_catalog_file_is_reported(policy: Policy, tmp_path: Path) -> None:
    errors = _errors(
        policy,
        "upstream: postgresql://svc@db/app\ncatalog_file: nowhere.yaml\n",
        base=str(tmp_path),
    )
    assert any("nowhere.yaml" in e for e in errors)
    assert any("the catalog file has problems" in e for e in errors)


def test_tls_files_must_exist(policy: Policy, tmp_path: Path) -> None:
    (tmp_path / "server.crt").write_text("cert")
    body = MINIMAL + "tls: {cert: server.crt, key: missing.key}\n"
    errors = _errors(policy, body, source="gw.yaml", base=str(tmp_path))
    assert _where(errors, "no such file 'missing.key'") == ("gw.yaml", 5, 34)
    errors = _errors(policy, MINIMAL + "tls: {cert: server.crt}\n", base=str(tmp_path))
    assert any("tls needs key" in e for e in errors)
    errors = _errors(policy, MINIMAL + "tls: {cert: a, key: b, ca: c}\n", base=str(tmp_path))
    assert any("ca" in e for e in errors)


def test_unknown_keys_are_refused(policy: Policy) -> None:
    errors = _errors(policy, MINIMAL + "pool_size: 10\n", source="gw.yaml")
    assert _where(errors, "pool_size") == ("gw.yaml", 5, 5)
    with pytest.raises(GatewayConfigError) as caught:
        load_postgres_config_text("gateway: {postgres: {}, ftp: {}}\nextra: 1\n", policy)
    text = "\n".join(caught.value.errors)
    assert "ftp" in text and "extra" in text


def test_an_unknown_class_in_masking_or_the_catalog(policy: Policy) -> None:
    body = """\
    upstream: postgresql://svc@db/app
    catalog: {public.customers: {eye: iris}}
    masking: {iris: whole, ssn: {keep_last: 4}}
    """
    errors = _errors(policy, body, source="gw.yaml")
    assert _where(errors, "unknown PII class 'iris' in masking") == ("gw.yaml", 5, 15)
    assert _where(errors, "unknown PII class 'iris' for") == ("gw.yaml", 4, 39)


def test_every_problem_is_reported_at_once(policy: Policy, tmp_path: Path) -> None:
    body = f"""\
    listen: nowhere:port
    upstream: postgresql://svc:{SECRET}@db/app?x=1
    approval_wait: 1h
    catalog: {{public.customers: {{ssn: iris}}}}
    masking: {{iris: whole}}
    tls: {{cert: a.crt, key: b.key}}
    colour: blue
    """
    errors = _errors(policy, body, source="gw.yaml", base=str(tmp_path))
    assert len(errors) >= 8
    assert {int(e.split(":")[1]) for e in errors} >= {3, 4, 5, 6, 7, 8, 9}
    assert SECRET not in "\n".join(errors)


def test_no_postgres_section(policy: Policy) -> None:
    for text in ("gateway: {http: {}}\n", "policy: p.yaml\n", "- a list\n"):
        with pytest.raises(GatewayConfigError):
            load_postgres_config_text(text, policy)
