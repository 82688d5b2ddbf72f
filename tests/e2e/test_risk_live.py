"""The risk engine fed by real requests to ``piigate serve`` processes: logins and decisions pick
up the device cookie, new places (small MaxMind databases written with ``mmdb-writer``) and
bursts of reads; a ``login`` rule on ``new_device`` makes a login step up and the login ticket
completes it; the ``approaching_limit`` early warning is streamed (``/v1/events/stream``) before
the limit fires; and two processes sharing Redis count one burst together.

SQLite for one process; the two-process test needs PostgreSQL and Redis (it skips without them
unless ``PIIGATE_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback_support import free_port
from serve_support import run_piigate, serving

# The geolocation tests' database writer and their networks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "risk"))
from geo_support import ASN, CITY, write_db

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
LONDON, LINKOPING = "81.2.69.10", "89.160.20.5"  # GB and SE in geo_support's databases
POLICY = """\
version: 1
levels:
  aal1: {acr: "urn:piigate:aal1"}
  aal2: {acr: "urn:piigate:aal2"}
pii:
  ssn: {}
factors:
  recovery: {level: aal2}
rules:
  - name: login-from-a-new-device
    when: {action: [login], signals: [new_device]}
    require: {level: aal2}
  - name: read-ssn
    when: {pii: [ssn], action: [read]}
    require: {level: aal2, max_age: 5m}
    otherwise: mask
  - name: edit-ssn
    when: {pii: [ssn], action: [update]}
    require: {level: aal2, max_age: 5m}
risk:
  velocity: {weight: 30, window: 1h, limit: 10, ip_limit: 1000}
  pii_enumeration: {weight: 50, window: 1h, distinct_records: 5}
profile: nist-800-63b-4
"""


@dataclass
class Service:
    url: str
    env: dict[str, str]
    app_key: str  # scope decisions
    events_key: str  # scope events

    def browser(self) -> httpx.Client:
        """A client with its own cookie jar, sending the service's origin as a browser would."""
        return httpx.Client(base_url=self.url, headers={"Origin": self.url}, timeout=15)

    def decide(self, subject: str, action: str = "read", **extra: Any) -> dict[str, Any]:
        body = {"subject": {"id": subject}, "action": action, "pii": ["ssn"], **extra}
        response = httpx.post(
            f"{self.url}/v1/decisions",
            json=body,
            headers={"Authorization": f"Bearer {self.app_key}"},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        decided: dict[str, Any] = response.json()
        return decided


def signals(decided: dict[str, Any]) -> set[str]:
    return {s["name"] for s in decided["risk"]["signals"]}


def base_env(tmp_path: Path) -> dict[str, str]:
    """The environment of this test's processes: no PIIGATE_* of the caller's, the test's geo
    databases (a city and an ASN one), a shared master key."""
    geo = tmp_path / "geo"
    geo.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    env.update(
        PIIGATE_RISK_CITY_DATABASE=str(write_db(geo / "city.mmdb", CITY, kind="GeoIP2-City")),
        PIIGATE_RISK_ASN_DATABASE=str(write_db(geo / "asn.mmdb", ASN, kind="GeoLite2-ASN")),
        PIIGATE_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        PIIGATE_LOG_FORMAT="json",
    )
    return env


def keys(env: dict[str, str]) -> tuple[str, str]:
    def key(name: str, scope: str) -> str:
        printed = run_piigate(env, "keys", "create", name, "--scope", scope)
        return printed.strip().splitlines()[-1]

    return key("app", "decisions"), key("watcher", "events")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    port = free_port()
    env = {
        **base_env(tmp_path),
        "PIIGATE_DATA_DIR": str(tmp_path / "data"),
        "PIIGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    run_piigate(env, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    app_key, events_key = keys(env)
    with serving(env, port, tmp_path / "serve.log", config=policy):
        yield Service(f"http://127.0.0.1:{port}", env, app_key, events_key)


def login(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/login", json={"username": "alice", "password": PASSWORD})


def test_logins_and_decisions_pick_up_risk_from_real_requests(service: Service) -> None:
    # The first login: nothing to compare with (no_history), so no step-up; the device cookie.
    first = service.browser()
    assert login(first).status_code == 200
    cookie = first.cookies.get("piigate_device")
    assert cookie is not None and cookie.startswith("dev_")
    created = first.post("/v1/factors/recovery")
    assert created.status_code == 201, created.text
    codes: list[str] = created.json()["codes"]

    # Another browser: a device new to alice, so the login rule asks for a step-up.
    other = service.browser()
    stepped = login(other)
    assert stepped.status_code == 401, stepped.text
    problem = stepped.json()
    assert "new_device" in problem["risk"]["signals"] and "piigate_session" not in other.cookies
    ticket, challenge = problem["login_ticket"], problem["challenge"]["id"]
    verified = other.post(
        f"/v1/challenges/{challenge}/verify",
        json={"method": "recovery", "code": codes[0]},
        headers={"PIIGate-Login-Ticket": ticket},
    )
    assert verified.status_code == 200, verified.text
    done = other.post("/v1/login/complete", json={"ticket": ticket})
    assert done.status_code == 200, done.text
    assert other.get("/v1/factors").status_code == 200  # the session works
    second = other.cookies.get("piigate_device")
    assert second is not None and second.split(".")[0] != cookie.split(".")[0]

    # Both devices are known now; a forged cookie is not.
    assert login(first).status_code == 200
    assert login(other).status_code == 200
    forged = service.browser()
    forged.cookies.set("piigate_device", cookie[:-4] + "AAAA")
    assert login(forged).status_code == 401

    decisions_pick_up_risk(service, cookie, codes[1])


def decisions_pick_up_risk(service: Service, cookie: str, code: str) -> None:
    """An app's decisions about alice, who logged in from the device of ``cookie``."""
    # The device cookie the app relays counts when genuine.
    assert "new_device" not in signals(service.decide("alice", context={"device_id": cookie}))
    assert "new_device" in signals(service.decide("alice", context={"device_id": "kiosk-3"}))

    # A place is learnt from a verification the app relays with its user's context ...
    chl = service.decide("alice", "update", context={"ip": LONDON})["challenge"]["id"]
    relayed = httpx.post(
        f"{service.url}/v1/challenges/{chl}/verify",
        json={"method": "recovery", "code": code, "context": {"ip": LONDON}},
        headers={"Authorization": f"Bearer {service.app_key}"},
        timeout=15,
    )
    assert relayed.status_code == 200, relayed.text
    # ... so London is familiar, and Linköping a new country.
    assert "new_country" not in signals(service.decide("alice", context={"ip": LONDON}))
    from_sweden = service.decide("alice", context={"ip": LINKOPING})
    assert "new_country" in signals(from_sweden)
    [detail] = [s["detail"] for s in from_sweden["risk"]["signals"] if s["name"] == "new_country"]
    assert "SE" in detail and LINKOPING not in detail

    # A burst of reads of distinct records: PII enumeration past five.
    fired = [
        "pii_enumeration" in signals(service.decide("alice", resource={"type": "c", "id": str(i)}))
        for i in range(1, 8)
    ]
    assert fired == [False] * 5 + [True] * 2


def test_the_early_warning_is_streamed_before_the_limit_fires(service: Service) -> None:
    frames: list[dict[str, Any]] = []
    params = {"type": ["approaching_limit", "decision"]}
    headers = {"Authorization": f"Bearer {service.events_key}"}
    with (
        httpx.Client(base_url=service.url, timeout=15) as client,
        client.stream("GET", "/v1/events/stream", params=params, headers=headers) as stream,
    ):
        assert stream.status_code == 200
        for i in range(1, 8):
            service.decide("bob", resource={"type": "c", "id": str(i)})
        lines = stream.iter_lines()
        while len([f for f in frames if f["type"] == "decision"]) < 7:
            line = next(lines)
            if line.startswith("data:"):
                frames.append(json.loads(line.removeprefix("data:").strip()))
    warnings = [(i, f) for i, f in enumerate(frames) if f["type"] == "approaching_limit"]
    fired = [
        i
        for i, f in enumerate(frames)
        if f["type"] == "decision" and "pii_enumeration" in str(f["data"]["risk"])
    ]
    [(warned_at, warning)] = [
        (i, f) for i, f in warnings if f["data"]["signal"] == "pii_enumeration"
    ]
    assert fired and warned_at < fired[0]
    assert warning["subject"] == "bob"
    assert warning["data"]["limit"] == 5 and warning["data"]["count"] == 4
    assert warning["data"]["trend"] == "rising"


@dataclass
class Pair:
    a: Service
    b: Service


@pytest.fixture
def pair(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Pair]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(POLICY))
    port_a, port_b = free_port(), free_port()
    base = {
        **base_env(tmp_path),
        "PIIGATE_DATABASE_URL": postgres_url,
        "PIIGATE_REDIS_URL": redis_url,
        "PIIGATE_PUBLIC_URL": f"http://127.0.0.1:{port_a}",
    }
    env_a, env_b = ({**base, "PIIGATE_DATA_DIR": str(tmp_path / n)} for n in ("a", "b"))
    app_key, events_key = keys(env_a)
    with (
        serving(env_a, port_a, tmp_path / "a.log", config=policy),
        serving(env_b, port_b, tmp_path / "b.log", config=policy),
    ):
        yield Pair(
            Service(f"http://127.0.0.1:{port_a}", env_a, app_key, events_key),
            Service(f"http://127.0.0.1:{port_b}", env_b, app_key, events_key),
        )


@pytest.mark.postgres
@pytest.mark.redis
def test_two_processes_count_one_burst_in_redis(pair: Pair) -> None:
    subject = f"carol-{secrets.token_hex(4)}"
    # Twelve decisions, every other one on each process: six each, never over the limit of
    # ten alone; together the eleventh passes it.
    fired = [
        "velocity" in signals((pair.a if i % 2 else pair.b).decide(subject, "update"))
        for i in range(12)
    ]
    assert fired == [False] * 10 + [True] * 2
    # The early warning, once for the two processes.
    events = httpx.get(
        f"{pair.a.url}/v1/events",
        params={"type": "approaching_limit", "subject": subject},
        headers={"Authorization": f"Bearer {pair.a.events_key}"},
        timeout=15,
    ).json()["events"]
    velocity = [e for e in events if e["data"]["signal"] == "velocity"]
    assert len(velocity) == 1 and velocity[0]["data"]["count"] == 8
