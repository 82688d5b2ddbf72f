"""``piigate authenticator`` (CONTRACT §1) against a real service on a loopback port, SQLite and
PostgreSQL: enrol from the link, list pending pushes, approve with the number, deny; the key
file's mode; one-line errors and exit codes for bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import subprocess
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cli_support import run_main

from loopback_support import free_port
from piigate.api.services import Services
from piigate.clock import FixedClock
from piigate.config import Settings
from piigate.crypto.secret import Secret
from piigate.identity import generate_api_key, hash_password
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate_authenticator import KeyFile

POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:piigate:aal1"}
      aal2: {acr: "urn:piigate:aal2"}
    pii:
      ssn: {}
    factors:
      push: {level: aal2, number_matching: true}
      totp: {level: aal2}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
      - name: transfers
        when: {action: [transact], amount_over: 1000}
        require: {level: aal2, max_age: 0, methods: [push]}
    profile: nist-800-63b-4
    """
)
PASSWORD = "correct horse battery staple"
PAYEE = "GB33BUKB20201555555555"


@dataclass
class Service:
    """A running service: its base URL, parts and clock, a logged-in user and an app key."""

    url: str
    services: Services
    clock: FixedClock
    alice: httpx.AsyncClient
    app: httpx.AsyncClient

    async def enroll_uri(self) -> str:
        response = await self.alice.post("/v1/factors/push")
        assert response.status_code == 201, response.text
        uri: str = response.json()["enroll_uri"]
        return uri

    async def push(self, body: dict[str, Any]) -> tuple[str, int]:
        """A decision for alice that needs a step-up, pushed: ``(challenge id, number)``."""
        decided = (await self.app.post("/v1/decisions", json=body)).json()
        assert decided["outcome"] == "step_up", decided
        challenge_id: str = decided["challenge"]["id"]
        sent = await self.app.post(f"/v1/challenges/{challenge_id}/push")
        assert sent.status_code == 202, sent.text
        return challenge_id, int(sent.json()["number"])


@pytest.fixture
async def service(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    """The service on a loopback port, its public URL that port (the enroll link names it)."""
    from piigate.api.app import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, public_url=url, audit_writer="thread"
    )
    # The authenticator signs with the real time: the service's clock starts there.
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    app = create_app(
        settings, clock=clock, policy=PolicyHolder(compile_policy(load_policy_text(POLICY)))
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        services: Services = app.state.services
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
        )
        task = asyncio.create_task(server.serve())

        async def stop() -> None:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 10)

        stack.push_async_callback(stop)
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        digest = await asyncio.to_thread(hash_password, Secret(PASSWORD))
        await services.store.add_user("alice", digest, [], clock.now())
        key_id, secret, key_digest = generate_api_key()
        await services.store.create_api_key(
            key_id, "orders-app", key_digest, [], ["decisions"], clock.now()
        )
        # A browser on the service's own pages sends its origin with the session cookie.
        alice = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, headers={"Origin": url})
        )
        login = await alice.post("/v1/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200
        app_client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {secret.reveal()}"})
        )
        yield Service(url, services, clock, alice, app_client)


async def piigate(*args: str) -> subprocess.CompletedProcess[str]:
    """``piigate ARGS`` through ``main`` in a worker thread, while the service keeps serving."""
    return await asyncio.to_thread(run_main, *args)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("piigate: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def transfer(amount: str = "2500.00") -> dict[str, Any]:
    return {
        "subject": {"id": "alice"},
        "action": "transact",
        "transaction": {"amount": amount, "currency": "EUR", "payee": PAYEE},
    }


async def test_enrol_list_approve_and_deny(service: Service, tmp_path: Path) -> None:
    keys = tmp_path / "cfg" / "authenticator.json"
    uri = await service.enroll_uri()
    enrolled = await piigate(
        "authenticator", "enroll", uri, "--name", "laptop", "--file", str(keys)
    )
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = enrolled.stdout.split()[2]
    assert enrolled.stdout.strip() == f"enrolled device {device_id} for alice at {service.url}"
    # The keys file: 0600 in a 0700 directory, holding the private key (and nothing printed).
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.parent.stat().st_mode) == 0o700
    saved = json.loads(keys.read_text())
    assert saved["version"] == 1 and len(saved["devices"]) == 1
    entry = saved["devices"][0]
    assert entry["device_id"] == device_id and entry["server"] == service.url
    assert entry["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE KEY" not in enrolled.stdout + enrolled.stderr
    factor = await service.services.store.get_factor(device_id)
    assert factor is not None and factor.state == "active"
    assert factor.data["device_name"] == "laptop"
    # The link was made without a label: the user sees the factor by the name --name gave it.
    (listed,) = (await service.alice.get("/v1/factors")).json()["factors"]
    assert (listed["id"], listed["label"], listed["device"]) == (device_id, "laptop", "laptop")
    # The link was for one device only.
    reused = await piigate("authenticator", "enroll", uri, "--file", str(keys))
    assert "invalid, already used or expired" in assert_one_line_error(reused, 1)
    assert len(json.loads(keys.read_text())["devices"]) == 1

    challenge_id, number = await service.push(transfer())
    listed = await piigate("authenticator", "pending", "--file", str(keys))
    assert listed.returncode == 0, listed.stderr
    line = listed.stdout.strip()
    push_id = line.split()[0]
    assert push_id.startswith("psh_")
    assert f"2500.00 EUR to {PAYEE}" in line and "for alice" in line and "transact" in line
    as_json = await piigate("authenticator", "pending", "--json", "--file", str(keys))
    item = json.loads(as_json.stdout)
    assert item["id"] == push_id and item["device_id"] == device_id and "number" not in item

    wrong = 10 + (number - 10 + 1) % 90
    refused = await piigate("authenticator", "approve", push_id, str(wrong), "--file", str(keys))
    line = assert_one_line_error(refused, 1)
    assert line == (
        f"piigate: error: {service.url}: not approved: the number did not match the one on "
        "the step-up page"
    )
    service.clock.advance(2)  # past the back-off after one failure
    approved = await piigate("authenticator", "approve", push_id, str(number), "--file", str(keys))
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"{push_id}: approved"
    # The requester collects its grant once, and it allows this very transfer.
    status = (await service.app.get(f"/v1/challenges/{challenge_id}/status")).json()
    assert status["state"] == "approved" and status["amr"] == ["mca", "pop"]
    again = (await service.app.get(f"/v1/challenges/{challenge_id}/status")).json()
    assert "grant" not in again
    allowed = await service.app.post(
        "/v1/decisions", json={**transfer(), "grants": [status["grant"]]}
    )
    assert allowed.json()["outcome"] == "allow"
    replay = await piigate("authenticator", "approve", push_id, str(number), "--file", str(keys))
    answered = f"piigate: error: {service.url}: this request was already answered"
    assert assert_one_line_error(replay, 1) == answered
    late_deny = await piigate("authenticator", "deny", push_id, "--file", str(keys))
    assert assert_one_line_error(late_deny, 1) == answered

    # "This wasn't me": the challenge is denied, an alert recorded, the risk raised.
    challenge_id, _ = await service.push(transfer("5000"))
    push_id = (await piigate("authenticator", "pending", "--file", str(keys))).stdout.split()[0]
    denied = await piigate("authenticator", "deny", push_id, "--file", str(keys))
    assert denied.stdout.strip() == f"{push_id}: denied"
    status = (await service.app.get(f"/v1/challenges/{challenge_id}/status")).json()
    assert status["state"] == "denied"
    alerts = await service.services.audit.list_events(types=["alert"])
    assert [e.data["kind"] for e in alerts] == ["push_denied"]
    nothing = await piigate("authenticator", "pending", "--file", str(keys))
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert nothing.stderr.strip() == "no pushes waiting"
    after = (await service.app.post("/v1/decisions", json=transfer())).json()
    assert "denied_push" in [s["name"] for s in after["risk"]["signals"]]


async def test_the_key_file_location_and_eddsa(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither --file nor the variable: ~/.config/piigate/authenticator.json.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PIIGATE_AUTHENTICATOR_FILE", raising=False)
    enrolled = await piigate(
        "authenticator", "enroll", await service.enroll_uri(), "--alg", "EdDSA"
    )
    assert enrolled.returncode == 0, enrolled.stderr
    default = tmp_path / "home" / ".config" / "piigate" / "authenticator.json"
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    (device,) = KeyFile(default).load()
    assert device.alg == "EdDSA" and device.subject == "alice"

    # PIIGATE_AUTHENTICATOR_FILE names another file.
    other = tmp_path / "other.json"
    monkeypatch.setenv("PIIGATE_AUTHENTICATOR_FILE", str(other))
    empty = await piigate("authenticator", "pending")
    assert "no device enrolled" in assert_one_line_error(empty, 1)
    assert not other.exists()


async def test_bad_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    usage = [
        ("enroll", "https://example.com/enroll?token=x"),
        ("enroll", "piigate-push://enroll?url=ftp://x&token=y"),
        ("approve", "psh_1", "7"),
        ("approve", "psh_1", "100"),
        ("approve", "psh_1", "forty"),
        ("approve", "../../v1/factors", "42"),
        ("deny", "psh 1"),
        ("pending", "--wait", "31"),
    ]
    for args in usage:
        result = await piigate("authenticator", *args, "--file", str(keys))
        assert_one_line_error(result, 2)

    missing = await piigate("authenticator", "approve", "psh_1", "42", "--file", str(keys))
    assert "no device enrolled" in assert_one_line_error(missing, 1)

    keys.write_text("{not json")
    keys.chmod(0o600)
    broken = await piigate("authenticator", "pending", "--file", str(keys))
    assert "not a piigate authenticator file" in assert_one_line_error(broken, 1)

    # A key file others can read is refused, as ssh refuses a readable private key.
    KeyFile(keys).save([])
    keys.chmod(0o644)
    exposed = await piigate("authenticator", "pending", "--file", str(keys))
    assert "chmod 600" in assert_one_line_error(exposed, 1)

    # A server that does not answer.
    from piigate.factors.push.protocol import DeviceAlgorithm, generate_device_key, private_key_pem
    from piigate_authenticator import DeviceEntry

    key = private_key_pem(generate_device_key(DeviceAlgorithm.ES256))
    keys.chmod(0o600)
    KeyFile(keys).save([DeviceEntry("http://127.0.0.1:9", "fct_1", "ES256", "x", "alice", key)])
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    unreachable = await piigate("authenticator", "pending", "--file", str(keys))
    assert "cannot reach http://127.0.0.1:9" in assert_one_line_error(unreachable, 1)
    assert key not in unreachable.stderr
