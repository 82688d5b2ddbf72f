"""Audited decisions through ``piigate serve`` against a bare FastAPI endpoint, same load.

Run: ``.venv/bin/python bench/api.py [--quick]``. Prints one JSON object per line on stdout
(progress on stderr). See docs/BENCHMARKS.md; nothing here asserts on time.

What runs:
- ``piigate keys create bench --scope decisions`` and ``piigate serve`` on a free loopback port,
  SQLite in a temporary ``PIIGATE_DATA_DIR``, the generated 50-rule policy (bench/_common.py),
  with its audit writer process (``--audit-writer thread`` for the thread instead); the server's
  CPU counts its child processes;
- the baseline: this file re-run with ``--serve-bare PORT``, a FastAPI app with one endpoint
  ``POST /v1/decisions`` that validates the same body with piigate's own request model
  (``DecisionRequestIn``) and returns a fixed decision-sized JSON, under the same uvicorn
  settings as ``piigate serve`` (one process, one worker, uvloop, start-up objects frozen out
  of the cyclic GC with ``gc.freeze()``);
- one load generator in this process: 32 keep-alive HTTP/1.1 connections, each a closed loop
  (send, wait for the whole response, send the next), rotating through the same 100 request
  bodies. It is a minimal asyncio protocol on uvloop rather than httpx: on a 2-core machine
  shared with the server, the client's CPU is taken from the server, and httpx costs far more
  (measured here: ~3.3 ms of client CPU per request against ~40 us for this client). Every
  request that is sent is awaited (nothing is in flight at the end), so the count of 200
  responses is exact and can be checked against the audit trail.
- warm-up, then rounds that alternate the two servers (order flipped each round), so drift in
  the machine's load hits both alike; then ``piigate audit verify``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import _common
from _common import emit, note, percentile, wait_listening

# Module level: with postponed annotations, FastAPI resolves the body model by name from here.
from piigate.api.schemas import DecisionRequestIn

BENCH = "api"
HOST = "127.0.0.1"
TARGET_RATIO = 0.5
TARGET_P99_MS = 20.0

# A decision-sized answer for the bare endpoint (a step-up with its challenge, ~450 bytes).
FIXED_DECISION: dict[str, Any] = {
    "decision_id": "dec_0123456789abcdefghijkl",
    "outcome": "step_up",
    "rules": ["read-ssn", "agent-reads-identity-numbers"],
    "mask": [],
    "risk": {"score": 0, "signals": []},
    "required": {
        "level": "aal2",
        "acr_values": ["urn:piigate:aal2"],
        "max_age": 300,
        "methods": ["totp", "sms", "push", "webauthn", "recovery"],
        "binding": None,
    },
    "challenge": {
        "id": "chl_0123456789abcdefghijkl",
        "expires_at": 1780000000,
        "url": "/stepup/chl_0123456789abcdefghijkl",
    },
    "www_authenticate": 'Bearer error="insufficient_user_authentication", '
    'error_description="A different authentication level is required", '
    'acr_values="urn:piigate:aal2", max_age=300',
}


# -- the baseline server ---------------------------------------------------------------------
def serve_bare(port: int) -> None:
    """The bare endpoint, under the uvicorn settings of ``piigate serve`` (see cli.serve)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI(title="bare")

    @app.post("/v1/decisions")
    async def create_decision(body: DecisionRequestIn) -> dict[str, Any]:
        return FIXED_DECISION

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=HOST,
            port=port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            lifespan="on",
        )
    )
    # As piigate serve runs (cli.serve): start-up objects frozen out of the cyclic GC, uvloop.
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(server.serve())


# -- the load generator ----------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need: int | None = None
        self.status = 0
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail(ConnectionError("response without content-length"))
                return
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end > 0 else len(head)])
            self.need = end + 4 + length
        if len(self.buffer) >= self.need:
            del self.buffer[: self.need]
            self.need = None
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self.status)

    def _fail(self, error: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed by the server"))

    async def request(self, payload: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter


@dataclass
class Run:
    """What one timed window of load on one server produced."""

    ok: int = 0
    other: dict[int, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    def add(self, other: Run) -> None:
        self.ok += other.ok
        for status, n in other.other.items():
            self.other[status] = self.other.get(status, 0) + n
        self.latencies_ns.extend(other.latencies_ns)
        self.wall_s += other.wall_s
        self.client_cpu_s += other.client_cpu_s
        self.server_cpu_s += other.server_cpu_s


def encode_requests(port: int, key: str, bodies: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for body in bodies:
        data = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST /v1/decisions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        out.append(head.encode() + data)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) and of its live child processes (the
    audit writer of ``piigate serve``), from /proc."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as fh:
                    pending.extend(int(child) for child in fh.read().split())
        except FileNotFoundError:  # a child that exited meanwhile
            continue
    return total / os.sysconf("SC_CLK_TCK")


async def drive(
    port: int, payloads: list[bytes], clients: int, seconds: float, server_pid: int
) -> Run:
    """``clients`` closed-loop connections for ``seconds``; every request sent is awaited."""
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(clients):
        _, proto = await loop.create_connection(_Connection, HOST, port)
        conns.append(proto)
    run = Run()
    per_client: list[list[int]] = [[] for _ in range(clients)]
    statuses: list[dict[int, int]] = [{} for _ in range(clients)]
    clock = time.perf_counter_ns

    async def client(i: int, deadline: float) -> None:
        conn, lat, seen = conns[i], per_client[i], statuses[i]
        n, k = len(payloads), i * 7
        while loop.time() < deadline:
            payload = payloads[k % n]
            k += 1
            t0 = clock()
            status = await conn.request(payload)
            lat.append(clock() - t0)
            seen[status] = seen.get(status, 0) + 1

    cpu0, server0, wall0 = time.process_time(), _cpu_seconds(server_pid), time.perf_counter()
    deadline = loop.time() + seconds
    try:
        await asyncio.gather(*(client(i, deadline) for i in range(clients)))
    finally:
        run.wall_s = time.perf_counter() - wall0
        run.client_cpu_s = time.process_time() - cpu0
        run.server_cpu_s = _cpu_seconds(server_pid) - server0
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    for lat, seen in zip(per_client, statuses, strict=True):
        run.latencies_ns.extend(lat)
        for status, n in seen.items():
            if status == 200:
                run.ok += n
            else:
                run.other[status] = run.other.get(status, 0) + n
    return run


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# -- processes -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def piigate_command() -> list[str]:
    script = Path(sys.executable).with_name("piigate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from piigate.cli import main; main()"]


def bench_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIIGATE_")  # never a configured PostgreSQL, Redis or IdP
    }
    env["PIIGATE_DATA_DIR"] = str(data_dir)
    env["PIIGATE_LOG_FORMAT"] = "json"
    return env


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://{HOST}:{port}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully: the audit log flushes
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def listening(command: list[str], port: int, log: Path) -> Iterator[tuple[int, int]]:
    """``command`` as a process, its output to ``log``, once it listens on ``port``: its
    ``(port, pid)``, stopped afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, log)
        yield port, proc.pid
    finally:
        stop(proc)


def create_key(env: dict[str, str]) -> str:
    """``piigate keys create bench --scope decisions``: the key it prints once."""
    created = subprocess.run(
        [*piigate_command(), "keys", "create", "bench", "--scope", "decisions"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip().splitlines()[-1]


def start_servers(
    tmp: Path, policy: Path, env: dict[str, str], gate_port: int, bare_port: int
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """``piigate serve`` on ``policy`` and the bare endpoint, each logging under ``tmp``; both
    ready when this returns (the caller stops them)."""
    gate_log, bare_log = tmp / "piigate.log", tmp / "bare.log"
    with open(gate_log, "wb") as glog, open(bare_log, "wb") as blog:
        serve = ["serve", "--config", str(policy), "--host", HOST, "--port", str(gate_port)]
        gate = subprocess.Popen(
            [*piigate_command(), *serve],
            env=env,
            stdout=glog,
            stderr=subprocess.STDOUT,
        )
        bare = subprocess.Popen(
            [sys.executable, str(Path(__file__)), "--serve-bare", str(bare_port)],
            env=env,
            stdout=blog,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(gate_port, gate, gate_log)
        wait_ready(bare_port, bare, bare_log)
    except BaseException:
        stop(gate)
        stop(bare)
        raise
    return gate, bare


def audit_verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``piigate audit verify`` on the bench's store (after the servers have stopped)."""
    return subprocess.run(
        [*piigate_command(), "audit", "verify"], env=env, capture_output=True, text=True
    )


def events_of_type(event_type: str, data_dir: Path, postgres: ScratchPostgres | None) -> int:
    """Events of ``event_type`` in the audit table (read-only; after the server has stopped):
    in the SQLite store under ``data_dir``, or in ``postgres``."""
    if postgres is not None:
        return postgres.count_events(event_type)
    db = data_dir / "piigate.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        query = "SELECT count(*) FROM audit_events WHERE type = ?"
        (count,) = conn.execute(query, (event_type,)).fetchone()
    return int(count)


class ScratchPostgres:
    """A fresh database on the PostgreSQL server of ``url`` for one run, dropped afterwards."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import make_url

        server = make_url(url)
        self.name = f"piigate_bench_{os.urandom(4).hex()}"
        self.admin = server.set(drivername="postgresql", database="postgres")
        self.url = server.set(database=self.name).render_as_string(hide_password=False)
        self._run(f'CREATE DATABASE "{self.name}"')

    def count_events(self, event_type: str) -> int:
        import psycopg

        plain = self.admin.set(database=self.name).render_as_string(hide_password=False)
        with psycopg.connect(plain) as conn:
            query = "SELECT count(*) FROM audit_events WHERE type = %s"
            row = conn.execute(query, (event_type,)).fetchone()
        return int(row[0]) if row else 0

    def drop(self) -> None:
        self._run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _run(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            self.admin.render_as_string(hide_password=False), autocommit=True
        ) as conn:
            conn.execute(sql)


# -- the benchmark ---------------------------------------------------------------------------
def select_bodies(now_epoch: int, outcomes: set[str]) -> list[dict[str, Any]]:
    """The request mix, optionally only the requests whose (risk-free) outcome is wanted."""
    bodies = [body for body, _score in _common.request_bodies(now_epoch)]
    if outcomes >= {"allow", "mask", "step_up", "deny"}:
        return bodies
    from datetime import UTC, datetime

    from piigate.model import ProvenLevel, RiskAssessment
    from piigate.policy import compile_policy, evaluate, load_policy_text
    from piigate.stepup.binding import binding_digest

    compiled = compile_policy(load_policy_text(_common.policy_text()))
    now = datetime.fromtimestamp(now_epoch, UTC)
    kept = []
    for body in bodies:
        request = DecisionRequestIn.model_validate(body).to_domain(compiled)
        session = request.session
        proven = []
        if session.level is not None and session.auth_time is not None:
            proven.append(ProvenLevel(session.level, session.auth_time, "idp"))
        result = evaluate(
            compiled, request, RiskAssessment(), proven, now=now, binding=binding_digest(request)
        )
        label = "mask" if result.mask else result.outcome.value
        if label in outcomes:
            kept.append(body)
    note(f"api: {len(kept)} of {len(bodies)} requests kept (outcomes {sorted(outcomes)})")
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~10 s run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=None, help="per server per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=None, help="seconds per server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument(
        "--outcomes",
        default="allow,mask,step_up,deny",
        help="diagnostics: keep only requests with these outcomes (default: the whole mix); "
        "mask and step_up decisions also store a challenge",
    )
    parser.add_argument(
        "--audit-writer",
        choices=("process", "thread"),
        default="process",
        help="diagnostics: where piigate serve runs the audit group commit (default: process, "
        "the product's default on SQLite)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="run piigate on PostgreSQL: a fresh database is created on this URL's server for "
        "the run and dropped afterwards (default: SQLite in a temporary directory)",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="piigate-bench-"))
    data_dir = tmp / "data"
    policy = tmp / "policy.yaml"
    policy.write_text(_common.policy_text(), encoding="utf-8")
    env = bench_env(data_dir)
    env["PIIGATE_AUDIT_WRITER"] = args.audit_writer
    procs: list[subprocess.Popen[bytes]] = []
    postgres: ScratchPostgres | None = None
    try:
        if args.database_url:
            postgres = ScratchPostgres(args.database_url)
            env["PIIGATE_DATABASE_URL"] = postgres.url
        key = create_key(env)
        gate_port, bare_port = free_port(), free_port()
        gate, bare = start_servers(tmp, policy, env, gate_port, bare_port)
        procs += [gate, bare]
        note(f"api: servers up in {time.monotonic() - started:.1f} s (piigate :{gate_port})")

        bodies = select_bodies(int(time.time()), set(args.outcomes.split(",")))
        targets = {
            "piigate": (gate_port, encode_requests(gate_port, key, bodies), gate.pid),
            "bare": (bare_port, encode_requests(bare_port, key, bodies), bare.pid),
        }
        totals = {name: Run() for name in targets}
        warm = {name: Run() for name in targets}
        with asyncio.Runner(loop_factory=new_loop) as runner:
            for name, (port, payloads, pid) in targets.items():
                warm[name] = runner.run(drive(port, payloads, args.clients, warmup, pid))
            for r in range(rounds):
                order = list(targets) if r % 2 == 0 else list(reversed(targets))
                for name in order:
                    port, payloads, pid = targets[name]
                    result = runner.run(drive(port, payloads, args.clients, seconds, pid))
                    note(
                        f"api: round {r + 1}/{rounds} {name}: "
                        f"{result.ok / result.wall_s:,.0f} ok/s, other {result.other}"
                    )
                    totals[name].add(result)
        stop(gate)
        stop(bare)
        verify = audit_verify(env)
        audited = events_of_type("decision", data_dir, postgres)
        ok_responses = warm["piigate"].ok + totals["piigate"].ok
        note(f"api: audit verify: {verify.stdout.strip() or verify.stderr.strip()}")
        kept = f"; data kept in {tmp}" if args.keep else ""
        note(f"api: finished in {time.monotonic() - started:.1f} s{kept}")
        store = "postgresql" if postgres is not None else "sqlite"
        report(totals, warm, args.clients, audited, ok_responses, verify, store)
    finally:
        for proc in procs:
            stop(proc)
        if postgres is not None:
            postgres.drop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(
    totals: dict[str, Run],
    warm: dict[str, Run],
    clients: int,
    audited: int,
    ok_responses: int,
    verify: subprocess.CompletedProcess[str],
    store: str,
) -> None:
    gate, bare = totals["piigate"], totals["bare"]
    lat = {name: sorted(run.latencies_ns) for name, run in totals.items()}
    rate = {name: run.ok / run.wall_s for name, run in totals.items()}
    common = {"clients": clients, "seconds": round(gate.wall_s, 1), "store": store}
    bare_is = "bare FastAPI endpoint (same body model, fixed answer), same load, same run"
    emit(
        BENCH,
        "decisions_per_s",
        rate["piigate"],
        "1/s",
        rate["bare"],
        baseline_is=bare_is,
        target=f">= {TARGET_RATIO:g} x baseline",
        target_met=rate["piigate"] >= TARGET_RATIO * rate["bare"],
        **common,
    )
    emit(
        BENCH,
        "throughput_ratio",
        rate["piigate"] / rate["bare"],
        "x",
        1.0,
        baseline_is="piigate decisions/s divided by bare endpoint requests/s",
    )
    for q in (50, 99):
        value = percentile(lat["piigate"], q) / 1e6
        extra: dict[str, Any] = {}
        if q == 99:
            extra = {"target": f"<= {TARGET_P99_MS:g} ms", "target_met": value <= TARGET_P99_MS}
        emit(
            BENCH,
            f"latency_p{q}_ms",
            value,
            "ms",
            percentile(lat["bare"], q) / 1e6,
            baseline_is=bare_is,
            **extra,
            **common,
        )
    emit(
        BENCH,
        "server_cpu_us_per_request",
        gate.server_cpu_s / max(gate.ok, 1) * 1e6,
        "us",
        bare.server_cpu_s / max(bare.ok, 1) * 1e6,
        baseline_is="server process CPU (all threads) per 200 response, bare endpoint",
    )
    emit(
        BENCH,
        "loadgen_cpu_share",
        gate.client_cpu_s / gate.wall_s,
        "cores",
        bare.client_cpu_s / bare.wall_s,
        baseline_is="load generator CPU while driving the bare endpoint",
    )
    emit(
        BENCH,
        "non_200_responses",
        float(sum(gate.other.values()) + sum(warm["piigate"].other.values())),
        "responses",
        float(sum(bare.other.values()) + sum(warm["bare"].other.values())),
        baseline_is="non-200 responses of the bare endpoint",
        statuses={str(k): v for k, v in gate.other.items()},
    )
    words = verify.stdout.split()
    chain_events = int(words[1]) if verify.returncode == 0 and len(words) > 1 else -1
    emit(
        BENCH,
        "audited_decisions",
        float(audited),
        "events",
        float(ok_responses),
        baseline_is="200 responses from piigate (warm-up included); equal = every one audited",
        equal=audited == ok_responses,
        audit_verify=(verify.stdout or verify.stderr).strip(),
        chain_events=chain_events,
        chain_ok=verify.returncode == 0,
    )
    mean_ms = statistics.fmean(lat["piigate"]) / 1e6 if lat["piigate"] else 0.0
    note(f"api: piigate mean latency {mean_ms:.2f} ms over {len(lat['piigate'])} requests")


if __name__ == "__main__":
    sys.exit(main())
