"""The README's PostgreSQL walkthrough with real processes: ``piigate serve`` and ``piigate
gateway postgres`` on one PostgreSQL store, a local user with TOTP, ``piigate login`` for a
database credential, and ``psql`` through the gateway: masked, then stepped up with ``SET
piigate.otp``, then in the clear."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pyotp
import pytest
import yaml
from bypass_corpus import CATALOG, SSN, loaded_corpus
from pg_gateway_support import POLICY
from sqlalchemy.engine import make_url

from loopback_support import free_port
from serve_support import PIIGATE, run_piigate, serving, stop

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSWORD = "correct horse battery staple"


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def write_config(tmp_path: Path, pg_admin_url: str, port: int, schema: str, **more: object) -> Path:
    """The gateway's configuration file (the policy beside it) in front of ``pg_admin_url``'s
    server, with the corpus of ``schema`` catalogued."""
    (tmp_path / "policy.yaml").write_text(POLICY)
    upstream = make_url(pg_admin_url)
    postgres = {
        "listen": f"127.0.0.1:{port}",
        "upstream": f"postgresql://{upstream.username}@"
        f"{upstream.host}:{upstream.port or 5432}/{upstream.database}",
        "approval_wait": "1s",
        "catalog": CATALOG(schema),
        **more,
    }
    config = tmp_path / "piigate.yaml"
    config.write_text(yaml.safe_dump({"policy": "policy.yaml", "gateway": {"postgres": postgres}}))
    return config


@contextlib.contextmanager
def gateway_process(
    env: dict[str, str], config: Path, port: int, log: Path, workers: int = 1
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*PIIGATE, "gateway", "postgres", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            if workers == 1 or log.read_text().count(f" of {workers})") == workers:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
            assert time.monotonic() < deadline, "the gateway did not listen"
            time.sleep(0.05)
        yield proc
    finally:
        stop(proc)


def psql(port: int, password: str, schema: str, *commands: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("psql")
    assert binary is not None
    args = [binary, "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-U", "alice", "test"]
    for command in commands:
        args += ["-c", command]
    env = {**os.environ, "PGPASSWORD": password, "PGOPTIONS": f"-c search_path={schema}"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_psql_through_the_gateway_with_a_database_credential(
    tmp_path: Path, postgres_url: str, pg_admin_url: str
) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    service_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "PIIGATE_DATA_DIR": str(tmp_path / "data"),
        "PIIGATE_DATABASE_URL": postgres_url,
        "PIIGATE_PUBLIC_URL": f"http://127.0.0.1:{service_port}",
    }
    with loaded_corpus(_libpq(pg_admin_url)) as schema:
        config = write_config(tmp_path, pg_admin_url, gateway_port, schema)
        run_piigate(
            env,
            "users",
            "add",
            "alice",
            "--password-stdin",
            "--config",
            str(config),
            stdin=PASSWORD + "\n",
        )
        with serving(env, service_port, tmp_path / "serve.log", config=config):
            base = f"http://127.0.0.1:{service_port}"
            secret = _enroll_totp(base)
            with gateway_process(env, config, gateway_port, tmp_path / "gateway.log"):
                login = subprocess.run(
                    [*PIIGATE, "login", "--user", "alice", "--url", base],
                    env=env,
                    input=PASSWORD + "\n",
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert login.returncode == 0, login.stderr
                credential = login.stdout.strip()
                assert credential.startswith("pgd_")

                masked = psql(
                    gateway_port, credential, schema, "SELECT ssn FROM customers WHERE id = 2"
                )
                assert masked.returncode == 0, masked.stderr
                assert SSN not in masked.stdout and "9999" in masked.stdout

                refused = psql(
                    gateway_port,
                    credential,
                    schema,
                    f"SELECT id FROM customers WHERE ssn = '{SSN}'",
                )
                assert refused.returncode != 0
                assert "step-up required: aal2" in refused.stderr
                assert "SET piigate.otp" in refused.stderr

                code = pyotp.TOTP(secret).at(time.time() + 30)  # the step after enrolment's
                approved = psql(
                    gateway_port,
                    credential,
                    schema,
                    f"SELECT id FROM customers WHERE ssn = '{SSN}'",
                    f"SET piigate.otp = '{code}'",
                    "SELECT ssn FROM customers WHERE id = 2",
                )
                assert approved.stdout.strip().splitlines()[-1] == SSN, approved.stderr
                logs = (tmp_path / "gateway.log").read_text() + (tmp_path / "serve.log").read_text()
                assert credential not in logs and code not in logs and SSN not in logs


def _enroll_totp(base: str) -> str:
    with httpx.Client(base_url=base, headers={"Origin": base}, timeout=30) as client:
        login = client.post("/v1/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        started = client.post("/v1/factors/totp", json={"label": "phone"})
        assert started.status_code == 201, started.text
        factor, secret = started.json()["id"], started.json()["secret"]
        confirmed = client.post(
            f"/v1/factors/totp/{factor}/confirm", json={"code": pyotp.TOTP(secret).now()}
        )
        assert confirmed.status_code == 200, confirmed.text
    return str(secret)


def test_workers_share_the_address_and_hand_each_other_cancels(
    tmp_path: Path, postgres_url: str, pg_admin_url: str
) -> None:
    """Two workers: connections reach both, a cancel, which comes on a new connection to
    whichever worker, stops its statement on the worker that runs it, and SIGHUP reloads the
    policy in each."""
    port = free_port()
    env = {
        **os.environ,
        "PIIGATE_DATA_DIR": str(tmp_path / "data"),
        "PIIGATE_DATABASE_URL": postgres_url,  # shared by the workers, with what they count
    }
    env.pop("PIIGATE_REDIS_URL", None)
    with loaded_corpus(_libpq(pg_admin_url)) as schema:
        config = write_config(tmp_path, pg_admin_url, port, schema, workers=2)
        key = run_piigate(env, "keys", "create", "app", "--config", str(config))
        key = key.strip().splitlines()[-1]
        log = tmp_path / "gateway.log"
        with gateway_process(env, config, port, log, workers=2) as supervisor:
            dsn = f"host=127.0.0.1 port={port} dbname=test user=app password={key}"
            options = f"options='-c search_path={schema}'"
            conns = [psycopg.connect(f"{dsn} {options}", autocommit=True) for _ in range(12)]
            try:
                workers = {conn.info.backend_pid % 2 for conn in conns}  # the key names its worker
                assert workers == {0, 1}, "the kernel spread the connections over both workers"
                for conn in conns:
                    row = conn.execute("SELECT ssn FROM customers WHERE id = 2").fetchone()
                    assert row is not None and row[0] != SSN  # masked on either worker
                    _cancelled(conn)
            finally:
                for conn in conns:
                    conn.close()
            supervisor.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while log.read_text().count("policy_reloaded") < 2:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            with psycopg.connect(f"{dsn} {options}") as conn:  # still serving, no restart
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert "gateway_worker_ended" not in log.read_text()
        assert "Traceback" not in log.read_text()


def _cancelled(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """A long statement on ``conn`` is stopped by its cancel, and ``conn`` goes on."""
    failed: list[BaseException] = []

    def sleep() -> None:
        try:
            conn.execute("SELECT pg_sleep(30)")
        except BaseException as exc:
            failed.append(exc)

    runner = threading.Thread(target=sleep)
    started = time.monotonic()
    runner.start()
    time.sleep(0.3)
    conn.cancel_safe()
    runner.join(20)
    assert not runner.is_alive() and time.monotonic() - started < 20
    assert len(failed) == 1 and isinstance(failed[0], psycopg.errors.QueryCanceled), failed
    assert conn.execute("SELECT 1").fetchone() == (1,)
