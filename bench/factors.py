"""Factor verifications (TOTP, WebAuthn) through ``piigate serve`` against the bare decision
endpoint, same run.

Run: ``.venv/bin/python bench/factors.py [--quick]``. Prints one JSON object per line on stdout
(progress on stderr). See docs/BENCHMARKS.md; nothing here asserts on time.

What runs:
- ``piigate keys create bench --scope decisions``, then factors written straight into the store
  (setup, not measured): one active TOTP factor (secret sealed with the keyring, as enrollment
  does) and one WebAuthn credential (an ES256 key of the software authenticator in
  ``tests/webauthn_soft.py``) per bench user. Every verification uses a user of its own: a TOTP
  code is accepted once per time step per factor, and this measures verification, not replay
  refusals;
- ``piigate serve`` on a free loopback port with ``PIIGATE_PUBLIC_URL=http://localhost:PORT``
  (the WebAuthn RP id ``localhost``), SQLite in a temporary ``PIIGATE_DATA_DIR``, the 50-rule
  benchmark policy; ``bench/api.py --serve-bare`` as the baseline, same uvicorn settings;
- per round and method, before the clock starts: one decision per user (``update`` of an SSN,
  so a step-up challenge), and for WebAuthn the request options of each challenge
  (``GET /v1/challenges/{id}/webauthn``) and an assertion signed over them; TOTP codes for the
  current step. Then ``--clients`` keep-alive connections (bench/api.py's load generator) post
  every ``POST /v1/challenges/{id}/verify`` once, relayed with the app's API key; the time to
  the last answer gives verifications per second;
- the baseline: the same connections posting decision bodies to the bare endpoint for a fixed
  time. Rounds alternate the order of the three loads; finally ``piigate audit verify`` and a
  count of ``challenge_verified`` events against the 200 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import _common
from _common import emit, note, percentile
from api import (
    HOST,
    Run,
    ScratchPostgres,
    _Connection,
    _cpu_seconds,
    audit_verify,
    bench_env,
    create_key,
    encode_requests,
    events_of_type,
    free_port,
    new_loop,
    start_servers,
    stop,
)
from api import drive as drive_for
from piigate.clock import SystemClock
from piigate.config import Settings
from piigate.crypto.keyring import open_keyring
from piigate.crypto.secret import Secret
from piigate.factors.ports import factor_aad
from piigate.factors.totp.protocol import hotp_code, new_totp_secret, totp_step
from piigate.factors.webauthn.protocol import b64url
from piigate.ids import new_id
from piigate.store import Database, Store

# The software authenticator of the tests: one implementation of the client side of WebAuthn.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from webauthn_soft import SoftAuthenticator

BENCH = "factors"
METHODS = ("totp", "webauthn")
SETUP_CONCURRENCY = 16
TOTP_DATA = {"digits": 6, "period": 30, "algorithm": "sha1"}


@dataclass
class BenchUser:
    subject: str
    totp: Secret[str] | None = None
    authenticator: SoftAuthenticator | None = None


@dataclass
class Totals:
    runs: dict[str, Run] = field(default_factory=lambda: {m: Run() for m in (*METHODS, "bare")})
    verified: int = 0


# -- setup -----------------------------------------------------------------------------------------
async def seed(settings: Settings, users: dict[str, list[BenchUser]], origin: str) -> None:
    """Active factors straight into the store: what enrollment would leave there."""
    db = Database.open(settings.store_url)
    try:
        await db.upgrade()
        store = Store(db)
        # The deployment's keys, as the server started next opens them (same data dir).
        opened = await open_keyring(
            store, settings.master_key_spec(), legacy_dir=None, clock=SystemClock()
        )
        keyring = opened.keyring
        now = datetime.now(UTC)
        for user in users["totp"]:
            secret = new_totp_secret()
            factor_id = new_id("fct")
            sealed = keyring.encrypt(secret.reveal().encode("ascii"), aad=factor_aad(factor_id))
            await store.add_factor(
                id=factor_id,
                subject_id=user.subject,
                kind="totp",
                now=now,
                secret=sealed,
                state="active",
                data=TOTP_DATA,
            )
            user.totp = secret
        for user in users["webauthn"]:
            auth = SoftAuthenticator(origin=origin)
            auth.user_handle = os.urandom(32)
            await store.add_factor(
                id=new_id("fct"),
                subject_id=user.subject,
                kind="webauthn",
                now=now,
                state="active",
                data={
                    "credential_id": b64url(auth.credential_id),
                    "public_key": b64url(auth.cose_key()),
                    "sign_count": 0,
                    "transports": ["internal"],
                    "user_handle": b64url(auth.user_handle),
                    "aaguid": "00000000-0000-0000-0000-000000000000",
                    "attestation": "none",
                    "user_verified": True,
                    "backup_eligible": False,
                    "backed_up": False,
                },
            )
            user.authenticator = auth
    finally:
        await db.close()


async def _gather_limited(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    slots = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with slots:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def open_challenges(
    client: httpx.AsyncClient, users: Sequence[BenchUser], method: str
) -> list[str]:
    """One step-up challenge per user (an SSN update), answerable with ``method``."""

    async def decide(user: BenchUser) -> str:
        body = {
            "subject": {"id": user.subject},
            "action": "update",
            "resource": {"type": "customer", "id": user.subject},
            "pii": ["ssn"],
            "context": {"user_agent": "bench/1.0"},
        }
        decided = (await client.post("/v1/decisions", json=body)).json()
        if decided.get("outcome") != "step_up" or method not in decided["required"]["methods"]:
            raise RuntimeError(f"unexpected decision for the bench: {decided.get('outcome')}")
        return str(decided["challenge"]["id"])

    return await _gather_limited([lambda u=u: decide(u) for u in users])


async def prepare(
    client: httpx.AsyncClient, port: int, key: str, users: Sequence[BenchUser], method: str
) -> list[bytes]:
    """The encoded verify requests, one per user (codes and assertions made here, untimed)."""
    challenges = await open_challenges(client, users, method)
    if method == "webauthn":

        async def sign(user: BenchUser, challenge_id: str) -> dict[str, Any]:
            answer = await client.get(f"/v1/challenges/{challenge_id}/webauthn")
            answer.raise_for_status()
            assert user.authenticator is not None
            return {
                "method": "webauthn",
                "credential": user.authenticator.get(answer.json()["publicKey"]),
            }

        bodies = await _gather_limited(
            [lambda u=u, c=c: sign(u, c) for u, c in zip(users, challenges, strict=True)]
        )
    else:
        step = totp_step(datetime.now(UTC))
        bodies = []
        for user in users:
            assert user.totp is not None
            bodies.append({"method": "totp", "code": hotp_code(user.totp, step)})
    payloads = []
    for challenge_id, body in zip(challenges, bodies, strict=True):
        data = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST /v1/challenges/{challenge_id}/verify HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        payloads.append(head.encode() + data)
    return payloads


# -- the timed part --------------------------------------------------------------------------------
async def drive_each(port: int, payloads: list[bytes], clients: int, server_pid: int) -> Run:
    """``clients`` closed-loop connections sending every payload exactly once."""
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(clients):
        _, proto = await loop.create_connection(_Connection, HOST, port)
        conns.append(proto)
    run = Run()
    pending = iter(payloads)
    clock = time.perf_counter_ns

    async def client(conn: _Connection) -> None:
        for payload in pending:  # one shared iterator: each payload goes out once
            t0 = clock()
            status = await conn.request(payload)
            run.latencies_ns.append(clock() - t0)
            if status == 200:
                run.ok += 1
            else:
                run.other[status] = run.other.get(status, 0) + 1

    cpu0, server0, wall0 = time.process_time(), _cpu_seconds(server_pid), time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        run.wall_s = time.perf_counter() - wall0
        run.client_cpu_s = time.process_time() - cpu0
        run.server_cpu_s = _cpu_seconds(server_pid) - server0
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    return run


# -- processes -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~20 s run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--verifications", type=int, default=None, help="per method per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--baseline-seconds", type=float, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="run piigate on PostgreSQL: a fresh database on this URL's server for the run, "
        "dropped afterwards (default: SQLite in a temporary directory)",
    )
    args = parser.parse_args(argv)
    count = args.verifications or (150 if args.quick else 500)
    rounds = args.rounds or (1 if args.quick else 3)
    bare_seconds = args.baseline_seconds or (2.0 if args.quick else 4.0)

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="piigate-bench-factors-"))
    data_dir = tmp / "data"
    policy = tmp / "policy.yaml"
    policy.write_text(_common.policy_text(), encoding="utf-8")
    gate_port, bare_port = free_port(), free_port()
    origin = f"http://localhost:{gate_port}"
    env = bench_env(data_dir)
    env["PIIGATE_PUBLIC_URL"] = origin
    procs: list[subprocess.Popen[bytes]] = []
    postgres: ScratchPostgres | None = None
    try:
        if args.database_url:
            postgres = ScratchPostgres(args.database_url)
            env["PIIGATE_DATABASE_URL"] = postgres.url
        key = create_key(env)
        users = {
            method: [BenchUser(f"{method[0]}u{i}") for i in range(count * rounds)]
            for method in METHODS
        }
        settings = Settings(data_dir=data_dir, database_url=postgres.url if postgres else None)
        asyncio.run(seed(settings, users, origin))
        note(f"factors: {count * rounds} users per method seeded")
        gate, bare = start_servers(tmp, policy, env, gate_port, bare_port)
        procs += [gate, bare]
        bare_payloads = encode_requests(
            bare_port, key, [b for b, _ in _common.request_bodies(int(time.time()))]
        )
        totals = Totals()
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(drive_for(bare_port, bare_payloads, args.clients, 1.0, bare.pid))  # warm-up
            client = httpx.AsyncClient(
                base_url=f"http://{HOST}:{gate_port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            try:
                for r in range(rounds):
                    order = ["totp", "webauthn", "bare"]
                    if r % 2:
                        order.reverse()
                    for name in order:
                        if name == "bare":
                            result = runner.run(
                                drive_for(
                                    bare_port, bare_payloads, args.clients, bare_seconds, bare.pid
                                )
                            )
                        else:
                            batch = users[name][r * count : (r + 1) * count]
                            payloads = runner.run(prepare(client, gate_port, key, batch, name))
                            result = runner.run(
                                drive_each(gate_port, payloads, args.clients, gate.pid)
                            )
                            totals.verified += result.ok
                        note(
                            f"factors: round {r + 1}/{rounds} {name}: "
                            f"{result.ok / result.wall_s:,.0f} ok/s, other {result.other}"
                        )
                        totals.runs[name].add(result)
            finally:
                runner.run(client.aclose())
        stop(gate)
        stop(bare)
        verify = audit_verify(env)
        audited = events_of_type("challenge_verified", data_dir, postgres)
        note(f"factors: audit verify: {verify.stdout.strip() or verify.stderr.strip()}")
        kept = f"; data kept in {tmp}" if args.keep else ""
        note(f"factors: finished in {time.monotonic() - started:.1f} s{kept}")
        report(totals, args.clients, audited, verify, "postgresql" if postgres else "sqlite")
    finally:
        for proc in procs:
            stop(proc)
        if postgres is not None:
            postgres.drop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(
    totals: Totals,
    clients: int,
    audited: int,
    verify: subprocess.CompletedProcess[str],
    store: str,
) -> None:
    bare = totals.runs["bare"]
    bare_rate = bare.ok / bare.wall_s
    bare_lat = sorted(bare.latencies_ns)
    bare_is = "bare FastAPI decision endpoint (bench/api.py --serve-bare), same clients, same run"
    for method in METHODS:
        run = totals.runs[method]
        lat = sorted(run.latencies_ns)
        verifications = run.ok + sum(run.other.values())
        common = {"clients": clients, "verifications": verifications, "store": store}
        emit(
            BENCH,
            f"{method}_verifications_per_s",
            run.ok / run.wall_s,
            "1/s",
            bare_rate,
            baseline_is=bare_is,
            **common,
        )
        for q in (50, 99):
            emit(
                BENCH,
                f"{method}_latency_p{q}_ms",
                percentile(lat, q) / 1e6,
                "ms",
                percentile(bare_lat, q) / 1e6,
                baseline_is=bare_is,
                **common,
            )
        emit(
            BENCH,
            f"{method}_server_cpu_us_per_verification",
            run.server_cpu_s / max(run.ok, 1) * 1e6,
            "us",
            bare.server_cpu_s / max(bare.ok, 1) * 1e6,
            baseline_is="server process CPU per 200 response, bare endpoint",
        )
        emit(
            BENCH,
            f"{method}_non_200_responses",
            float(sum(run.other.values())),
            "responses",
            float(sum(bare.other.values())),
            baseline_is="non-200 responses of the bare endpoint",
            statuses={str(k): v for k, v in run.other.items()},
        )
    words = verify.stdout.split()
    emit(
        BENCH,
        "audited_verifications",
        float(audited),
        "events",
        float(totals.verified),
        baseline_is="200 verify responses; equal = every grant audited",
        equal=audited == totals.verified,
        chain_ok=verify.returncode == 0,
        chain_events=int(words[1]) if verify.returncode == 0 and len(words) > 1 else -1,
    )


if __name__ == "__main__":
    sys.exit(main())
