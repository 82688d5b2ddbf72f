"""Two ``piigate serve`` processes, as a deployment runs them: separate data directories, one
PostgreSQL database (a scratch one, dropped afterwards), one Redis, the same master key
(``PIIGATE_MASTER_KEY``) and public URL. A TOTP grant obtained on one node is accepted by the
other's decision; an SMS factor enrolled through one is confirmed through the other (the SMS
provider is the tests' recording webhook server); ``piigate keys rotate`` is seen by both without
a restart. A node given another master key, or none, refuses to start in one line.

Needs PostgreSQL and Redis: skips without them, unless ``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback_support import free_port
from piigate.crypto.secret import Secret
from piigate.factors.totp.protocol import hotp_code, totp_step

# The recording webhook server of the SMS tests stands in for the provider.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "factors" / "sms"))
from sms_support import RecordingServer

from serve_support import EXAMPLE_POLICY, PIIGATE, run_piigate, serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "correct horse battery staple"
PHONE = "+33612345678"


def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Deployment:
    a: str  # each node's own address
    b: str
    public: str  # the one public URL (grant issuer) every node is given
    key: str  # an app's API key, scope decisions
    env_a: dict[str, str]
    sms: RecordingServer
    users: tuple[str, str, str]  # this run's alice, bob and carol (Redis counters are shared)


@pytest.fixture
def deployment(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Deployment]:
    port_a, port_b = free_port(), free_port()
    public = f"http://127.0.0.1:{port_a}"  # the load balancer's address, in a real deployment
    sms = RecordingServer()
    sms.start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    base.update(
        PIIGATE_DATABASE_URL=postgres_url,
        PIIGATE_REDIS_URL=redis_url,
        PIIGATE_MASTER_KEY=master_key(),
        PIIGATE_PUBLIC_URL=public,
        PIIGATE_LOG_FORMAT="json",
        PIIGATE_SMS_PROVIDER="webhook",
        PIIGATE_SMS_WEBHOOK_URL=sms.url,
        PIIGATE_SMS_WEBHOOK_SECRET="a webhook secret of the test",
    )
    env_a, env_b = ({**base, "PIIGATE_DATA_DIR": str(tmp_path / node)} for node in ("a", "b"))
    run = secrets.token_hex(4)
    users = (f"alice-{run}", f"bob-{run}", f"carol-{run}")
    for name in users:
        run_piigate(env_a, "users", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    key = (
        run_piigate(env_a, "keys", "create", "app", "--scope", "decisions").strip().splitlines()[-1]
    )
    try:
        with (
            serving(env_a, port_a, tmp_path / "a.log"),
            serving(env_b, port_b, tmp_path / "b.log"),
        ):
            yield Deployment(
                f"http://127.0.0.1:{port_a}",
                f"http://127.0.0.1:{port_b}",
                public,
                key,
                env_a,
                sms,
                users,
            )
    finally:
        sms.stop()


class Person:
    """A logged-in user: one cookie jar, sent to whichever node is asked (sessions live in the
    store), with the public URL as ``Origin``, as a browser on the console would send it."""

    def __init__(self, deployment: Deployment, name: str) -> None:
        self.http = httpx.Client(headers={"Origin": deployment.public}, timeout=10)
        login = self.http.post(
            f"{deployment.a}/v1/login", json={"username": name, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        self.name = name

    def post(self, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(url, json=body) if body is not None else self.http.post(url)


def totp(secret: str, *, later: int = 0) -> str:
    return hotp_code(Secret(secret), totp_step(datetime.now(UTC) + timedelta(seconds=later)))


def decide(deployment: Deployment, node: str, subject: str, **extra: Any) -> dict[str, Any]:
    body = {
        "subject": {"id": subject},
        "action": "update",
        "resource": {"type": "customer", "id": "42"},
        "pii": ["ssn"],
        **extra,
    }
    response = httpx.post(
        f"{node}/v1/decisions",
        json=body,
        headers={"Authorization": f"Bearer {deployment.key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    decided: dict[str, Any] = response.json()
    return decided


def enroll_totp(deployment: Deployment, person: Person, *, on: str, confirm_on: str) -> str:
    """An active TOTP factor (confirmed with the previous step's code, so that any later code
    is fresh); its secret."""
    started = person.post(f"{on}/v1/factors/totp", {"label": "phone"})
    assert started.status_code == 201, started.text
    factor_id, secret = started.json()["id"], started.json()["secret"]
    confirm = f"{confirm_on}/v1/factors/totp/{factor_id}/confirm"
    confirmed = person.post(confirm, {"code": totp(secret, later=-30)})
    assert confirmed.status_code == 200, confirmed.text
    secret_text: str = secret
    return secret_text


def step_up(deployment: Deployment, person: Person, secret: str, *, on: str, later: int) -> str:
    """A grant for ``person``'s SSN update, proven with TOTP on node ``on``."""
    challenge = decide(deployment, on, person.name)["challenge"]["id"]
    verified = person.post(
        f"{on}/v1/challenges/{challenge}/verify",
        {"method": "totp", "code": totp(secret, later=later)},
    )
    assert verified.status_code == 200, verified.text
    grant: str = verified.json()["grant"]
    return grant


def kid(token: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    found: str = header["kid"]
    return found


def test_two_nodes_share_grants_factors_and_rotations(deployment: Deployment) -> None:
    d = deployment
    alice_name, bob_name, carol_name = d.users

    # (a) A TOTP grant from node a is accepted by node b's decision.
    alice = Person(d, alice_name)
    secret = enroll_totp(d, alice, on=d.a, confirm_on=d.a)
    grant = step_up(d, alice, secret, on=d.a, later=0)
    assert decide(d, d.b, alice_name, grants=[grant])["outcome"] == "allow"

    # (b) An SMS factor enrolled through node a is confirmed through node b.
    bob = Person(d, bob_name)
    started = bob.post(f"{d.a}/v1/factors/sms", {"phone": PHONE})
    assert started.status_code == 201, started.text
    [sent] = [json.loads(r.body) for r in d.sms.requests]
    assert sent["to"] == PHONE
    code = re.search(r"\b(\d{6})\b", sent["text"])
    assert code is not None
    confirmed = bob.post(f"{d.b}/v1/factors/sms/{started.json()['id']}/confirm", {"code": code[1]})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "active"

    # (c) A rotation by the command line is seen by both nodes, neither restarted.
    rotated = run_piigate(d.env_a, "keys", "rotate")
    found = re.fullmatch(
        r"rotated signing key (\S+) and data key (\S+); \d+ secrets re-wrapped\n", rotated
    )
    assert found, rotated
    new_signing, new_data = found[1], found[2]
    # alice's secret is now sealed under the new data key: node b reads it, and signs the
    # grant with the new signing key it learned in the same reload ...
    grant = step_up(d, alice, secret, on=d.b, later=30)
    assert kid(grant) == new_signing
    # ... which node a, that has not met it yet, verifies.
    assert decide(d, d.a, alice_name, grants=[grant])["outcome"] == "allow"
    # A factor sealed on node a after the rotation is read on node b.
    carol = Person(d, carol_name)
    carol_secret = enroll_totp(d, carol, on=d.a, confirm_on=d.b)
    carol_grant = step_up(d, carol, carol_secret, on=d.b, later=0)
    assert decide(d, d.a, carol_name, grants=[carol_grant])["outcome"] == "allow"
    jwks = httpx.get(f"{d.b}/.well-known/jwks.json", timeout=10).json()
    assert new_signing in {k["kid"] for k in jwks["keys"]}
    assert new_data not in json.dumps(jwks)

    for node in (d.a, d.b):
        assert httpx.get(f"{node}/readyz", timeout=10).status_code == 200


@pytest.mark.parametrize("master", ["another", "none"])
def test_a_node_without_the_deployments_master_key_refuses_to_start(
    postgres_url: str, tmp_path: Path, master: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    base["PIIGATE_DATABASE_URL"] = postgres_url
    deployment_key = master_key()
    first = {**base, "PIIGATE_DATA_DIR": str(tmp_path / "a"), "PIIGATE_MASTER_KEY": deployment_key}
    run_piigate(first, "keys", "rotate", "--no-data")  # the deployment's keys, in the store
    env = {**base, "PIIGATE_DATA_DIR": str(tmp_path / "b")}
    if master == "another":
        env["PIIGATE_MASTER_KEY"] = master_key()

    done = subprocess.run(
        [*PIIGATE, "serve", "--config", str(EXAMPLE_POLICY), "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("piigate: error: cannot start: ")
    if master == "another":
        assert "the store's keys are sealed by master key mk-" in line
        assert env["PIIGATE_MASTER_KEY"] not in line and deployment_key not in line
    else:
        assert "the store holds keys but this node has no master key" in line
        assert not (tmp_path / "b" / "master.key").exists()
