"""The HTTP gateway (``piigate gateway http``) against the upstream API it fronts, same load.

Run: ``.venv/bin/python bench/gateway_http.py [--quick] [--profile FILE]``. Prints one JSON
object per line on stdout (progress on stderr). See docs/BENCHMARKS.md; nothing here asserts on
time. ``--profile FILE``: instead of the runs, the gateway under cProfile from the first SIGUSR1
(sent after the warm-up) through the ``masked`` and ``pass`` workloads at ``--clients``; its
stats to FILE and the top functions on stderr, with the CPU of the gateway process and of its
audit writer apart.

What runs:
- the upstream: the sample customer API (``python -m piigate.demo.customers``), one uvicorn
  process;
- ``piigate gateway http`` in front of it, the engine in process on SQLite in a temporary data
  directory (with its audit writer process), examples/policy.yaml, examples/gateway.yaml's
  routes and in-memory rate limits high enough never to refuse. Its identity provider is this
  script: an ES256 key made for the run, its JWKS served from a thread here, and 100 access
  tokens (100 subjects) of an ``aal1`` login, so every read of a customer is masked;
- three workloads, each sent through the gateway, through a bare relay (``bench/relay.py``:
  the same server and upstream client with no gate at all, the most any gateway written this
  way reaches here) and straight to the upstream (the baseline, the same request bytes), in
  rounds that alternate the order:
  ``masked``: ``GET /customers/1`` (~260 bytes of JSON; the gateway validates the token,
  decides, audits, opens the challenge named in ``PIIGate-Unlock``, reads, masks and
  re-serialises the answer); ``pass``: ``GET /health``, a route that touches no PII (token,
  decision and audit; the answer streams back); ``stream``: ``GET /files/1048576``, 1 MiB
  streamed back through a route without PII;
- load: bench/api.py's generator in this process, ``--clients`` (32) keep-alive connections in
  closed loops; then one connection alone, for the latency a request gains when nothing queues
  (in 8 short slices per round that alternate the targets, the upstream's own included).
  Server CPU per request counts the gateway with its audit writer (the upstream's CPU during
  the gateway's run is reported on its own line). The upstream client alone is measured by
  bench/upstream_clients.py;
- one gateway process serves its /metrics too, and its ``piigate_gateway_http_phase_seconds``
  over the one-connection slices says where its time went (``*_phase_*_us_alone``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

import _reference_proxies as reference_proxies
from _common import emit, note, percentile, wait_listening, wait_workers
from _gateway_http_parts import AUDIENCE, Issuer, own_cpu_seconds
from api import HOST, Run, _cpu_seconds, bench_env, free_port, new_loop, piigate_command, stop
from api import drive as drive_for

BENCH = "gateway_http"
TARGET_ADDED_P50_MS = 1.0
TARGET_RATIO = 0.6
ALONE_SLICES = 8  # per workload and round: the one-connection runs, alternating the targets
REDIS_URL = "redis://127.0.0.1:6379/15"  # --workers N: the workers' shared rate limits
ROOT = Path(__file__).resolve().parents[1]
# lean_client, raw_relay, nginx: with --reference only
TARGETS = ("gateway", "relay", "lean_client", "raw_relay", "nginx", "direct")
# What each relay is, as the report names it.
RELAYS = {
    "relay": "the bare relay (no gate)",
    "lean_client": "uvicorn with a lean httptools client (bench/relay_lean.py --server uvicorn)",
    "raw_relay": "a raw asyncio relay (bench/relay_lean.py --server raw)",
    "nginx": "nginx (the reference proxy)",
}
FILE_BYTES = 1024 * 1024
WORKLOADS = {"masked": "/customers/1", "pass": "/health", "stream": f"/files/{FILE_BYTES}"}


def write_config(
    tmp: Path,
    issuer: Issuer,
    gateway_port: int,
    upstream_port: int,
    workers: int = 1,
    redis: bool = False,
) -> Path:
    """examples/policy.yaml with examples/gateway.yaml's routes, in front of the upstream;
    with ``workers`` > 1, that many processes; with ``redis`` (which several workers need),
    the rate limits counted in the local Redis."""
    example = yaml.safe_load((ROOT / "examples" / "gateway.yaml").read_text())["gateway"]["http"]
    identity = {"issuer": issuer.url, "audience": AUDIENCE, "jwks_url": f"{issuer.url}/jwks"}
    http = {
        **example,
        "listen": f"{HOST}:{gateway_port}",
        "upstream": f"http://{HOST}:{upstream_port}",
        "identity": identity,
        "rate_limit": {"per_subject": "100000000/m", "per_ip": "100000000/m"},
    }
    if workers > 1:
        http["workers"] = workers
    if redis:
        http["rate_limit"]["store"] = REDIS_URL
    config = tmp / "gateway.yaml"
    document = {
        "policy": str(ROOT / "examples" / "policy.yaml"),
        "service": {"data_dir": str(tmp / "data"), "public_url": "http://127.0.0.1:8080"},
        "gateway": {"http": http},
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


@contextlib.contextmanager
def processes(
    tmp: Path,
    issuer: Issuer,
    profile: str | None = None,
    reference: bool = False,
    workers: int = 1,
    redis: bool = False,
    metrics_port: int | None = None,
) -> Iterator[dict[str, tuple[int, int]]]:
    """The upstream, the gateway and the bare relay (with ``reference``, the lean relays and
    nginx too), each ``name -> (port, pid)``, stopped afterwards. With ``profile``, the
    gateway runs under :func:`serve`; with ``metrics_port``, it serves its /metrics there."""
    up_port, gw_port, relay_port = free_port(), free_port(), free_port()
    config = write_config(tmp, issuer, gw_port, up_port, workers, redis)
    env = bench_env(tmp / "data")
    if redis:  # the engine's behaviour counters too (shared by the workers)
        env["PIIGATE_REDIS_URL"] = REDIS_URL
    gateway = [*piigate_command(), "gateway", "http", "--config", str(config)]
    if metrics_port is not None:
        gateway += ["--metrics", f"{HOST}:{metrics_port}"]
    if profile is not None:
        gateway = [
            sys.executable,
            str(ROOT / "bench" / "_gateway_http_parts.py"),
            str(config),
            profile,
        ]
    commands = {
        "direct": (
            up_port,
            [sys.executable, "-m", "piigate.demo.customers", "--port", str(up_port)],
        ),
        "gateway": (gw_port, gateway),
        "relay": (
            relay_port,
            [
                sys.executable,
                str(ROOT / "bench" / "relay.py"),
                *("--port", str(relay_port), "--upstream", f"http://{HOST}:{up_port}"),
            ],
        ),
    }
    if reference:  # where a Python relay's time goes: the client, then the server
        for name, mode in (("lean_client", "uvicorn"), ("raw_relay", "raw")):
            port = free_port()
            commands[name] = (
                port,
                [
                    sys.executable,
                    str(ROOT / "bench" / "relay_lean.py"),
                    *("--port", str(port), "--upstream", f"http://{HOST}:{up_port}"),
                    *("--server", mode),
                ],
            )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (port, command) in commands.items():
            log = tmp / f"{name}.log"
            with log.open("wb") as out:
                procs[name] = subprocess.Popen(
                    command, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            wait_listening(port, procs[name], log)
        wait_workers(tmp / "gateway.log", workers)
        started = {name: (commands[name][0], proc.pid) for name, proc in procs.items()}
        with contextlib.ExitStack() as stack:
            if reference and (missing := reference_proxies.available("nginx")) is not None:
                note(f"{BENCH}: no reference run: {missing}")
            elif reference:
                started["nginx"] = stack.enter_context(
                    reference_proxies.nginx(tmp, f"{HOST}:{up_port}")
                )
            yield started
    finally:
        for proc in procs.values():
            stop(proc)


def payloads(port: int, path: str, tokens: list[str]) -> list[bytes]:
    head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    return [f"{head}Authorization: Bearer {token}\r\n\r\n".encode() for token in tokens]


@dataclass
class Measured:
    """One workload's runs on one target: loaded (``clients``), alone (1 client)."""

    loaded: Run
    alone: Run
    upstream_cpu_s: float = 0.0  # the upstream's CPU during the loaded runs
    # The gateway's own account of its alone runs: phase -> count, sum and cumulative bucket
    # counts, from the piigate_gateway_http_phase_seconds histogram of its /metrics.
    phases: dict[str, dict[str, float]] = field(default_factory=dict)


PHASE_METRIC = "piigate_gateway_http_phase_seconds"


def scrape_phases(url: str) -> dict[str, dict[str, float]]:
    """Each phase's ``count``, ``sum`` (seconds) and cumulative bucket counts (keyed by their
    upper bound, as text: ``"0.0005"``, ``"+Inf"``) in the gateway's /metrics at ``url``."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(PHASE_METRIC):
                continue
            kind = sample.name.rsplit("_", 1)[1]
            key = sample.labels["le"] if kind == "bucket" else kind
            found.setdefault(sample.labels["phase"], {})[key] = sample.value
    return found


async def drive(
    port: int, load: list[bytes], clients: int, seconds: float, pids: tuple[int, int]
) -> tuple[Run, float]:
    """bench/api.py's load generator; with the CPU the upstream used meanwhile."""
    server_pid, upstream_pid = pids
    before = _cpu_seconds(upstream_pid)
    run = await drive_for(port, load, clients, seconds, server_pid)
    return run, _cpu_seconds(upstream_pid) - before


def measure(
    procs: dict[str, tuple[int, int]],
    tokens: list[str],
    args: argparse.Namespace,
    phases_url: str | None = None,
) -> dict[tuple[str, str], Measured]:
    """Every workload on both targets, rounds alternating the order; with ``phases_url``
    (the gateway's /metrics), the gateway's phases in its runs alone."""
    targets = tuple(t for t in TARGETS if t in procs)
    results = {(w, t): Measured(Run(), Run()) for w in WORKLOADS for t in targets}
    upstream_pid = procs["direct"][1]
    loads = {
        (w, t): payloads(procs[t][0], path, tokens) for w, path in WORKLOADS.items() for t in procs
    }
    with asyncio.Runner(loop_factory=new_loop) as runner:
        for (_, t), load in loads.items():  # warm-up: the JWKS, caches, the store's first writes
            port, pid = procs[t]
            runner.run(drive(port, load, args.clients, args.warmup, (pid, upstream_pid)))
        for r in range(args.rounds):
            for w in WORKLOADS:
                order = targets if r % 2 == 0 else targets[::-1]
                for t in order:
                    port, pid = procs[t]
                    got = results[(w, t)]
                    run, up_cpu = runner.run(
                        drive(port, loads[(w, t)], args.clients, args.seconds, (pid, upstream_pid))
                    )
                    got.loaded.add(run)
                    got.upstream_cpu_s += up_cpu
                    note(
                        f"{BENCH}: round {r + 1}/{args.rounds} {w} {t}: "
                        f"{run.ok / run.wall_s:,.0f} ok/s, other {run.other}"
                    )
                # Alone: one connection, in short slices that alternate the targets, so that a
                # target's p50 and the upstream's own come from the same moments of a machine
                # whose speed drifts (an added latency is a difference of the two).
                for s in range(ALONE_SLICES):
                    for t in order if s % 2 == 0 else order[::-1]:
                        port, pid = procs[t]
                        seconds = args.seconds / 2 / ALONE_SLICES
                        timed = phases_url is not None and t == "gateway"
                        before = scrape_phases(phases_url) if timed else {}
                        alone, _ = runner.run(
                            drive(port, loads[(w, t)], 1, seconds, (pid, upstream_pid))
                        )
                        results[(w, t)].alone.add(alone)
                        if timed:
                            add_phases(results[(w, t)].phases, before, scrape_phases(phases_url))
    return results


def add_phases(
    into: dict[str, dict[str, float]],
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
) -> None:
    """Add what each phase counted (count, sum, buckets) between the scrapes ``before`` and
    ``after``."""
    for phase, values in after.items():
        was = before.get(phase, {})
        got = into.setdefault(phase, {})
        for key, value in values.items():
            got[key] = got.get(key, 0.0) + value - was.get(key, 0.0)


def bucket_median(counted: dict[str, float]) -> float | None:
    """The median, in seconds, read from cumulative bucket counts (``counted``: bound → count)
    by linear interpolation inside the bucket that holds it; None when nothing was counted or
    it lies in the last, unbounded bucket."""
    bounds = sorted((float(k), v) for k, v in counted.items() if k not in ("count", "sum"))
    total = bounds[-1][1] if bounds else 0.0
    if not total:
        return None
    half, lower, below = total / 2, 0.0, 0.0
    for upper, cumulative in bounds:
        if cumulative >= half:
            if upper == float("inf"):
                return None
            inside = cumulative - below
            return lower + (upper - lower) * ((half - below) / inside if inside else 0.0)
        lower, below = upper, cumulative
    return None


def report_phases(w: str, gw: Measured, direct: Measured, path: str) -> None:
    """Where the gateway's time went alone, phase by phase (its own histogram: the mean, and
    the median read from its buckets)."""
    base = percentile(sorted(direct.alone.latencies_ns), 50) / 1e3
    for phase in ("decision", "upstream", "masking", "audit_wait"):
        counted = gw.phases.get(phase, {})
        count = counted.get("count", 0.0)
        if not count:
            continue
        common = {"requests": int(count), "path": path}
        emit(
            BENCH,
            f"{w}_phase_{phase}_us_alone",
            counted.get("sum", 0.0) / count * 1e6,
            "us",
            base,
            baseline_is="the upstream's own p50 alone (1 client), same slices; value = the "
            "gateway's mean time in this phase (piigate_gateway_http_phase_seconds)",
            **common,
        )
        median = bucket_median(counted)
        if median is not None:
            emit(
                BENCH,
                f"{w}_phase_{phase}_p50_us_alone",
                median * 1e6,
                "us",
                base,
                baseline_is="the upstream's own p50 alone (1 client), same slices; value = the "
                "gateway's median in this phase, interpolated in its histogram's buckets",
                **common,
            )


def report(results: dict[tuple[str, str], Measured], clients: int) -> None:
    for w, path in WORKLOADS.items():
        gw, direct = results[(w, "gateway")], results[(w, "direct")]
        rate = {t: m.loaded.ok / m.loaded.wall_s for t, m in (("gateway", gw), ("direct", direct))}
        lat = {t: sorted(m.loaded.latencies_ns) for t, m in (("gateway", gw), ("direct", direct))}
        alone = {t: sorted(m.alone.latencies_ns) for t, m in (("gateway", gw), ("direct", direct))}
        common = {"clients": clients, "path": path, "seconds": round(gw.loaded.wall_s, 1)}
        base_is = "the upstream asked directly (same request bytes, same load), same run"
        emit(
            BENCH,
            f"{w}_requests_per_s",
            rate["gateway"],
            "1/s",
            rate["direct"],
            baseline_is=base_is,
            target=f">= {TARGET_RATIO:g} x baseline",
            target_met=rate["gateway"] >= TARGET_RATIO * rate["direct"],
            **common,
        )
        for q in (50, 99):
            emit(
                BENCH,
                f"{w}_latency_p{q}_ms",
                percentile(lat["gateway"], q) / 1e6,
                "ms",
                percentile(lat["direct"], q) / 1e6,
                baseline_is=base_is,
                **common,
            )
        for label, samples, n in (("loaded", lat, clients), ("alone", alone, 1)):
            added = (percentile(samples["gateway"], 50) - percentile(samples["direct"], 50)) / 1e6
            emit(
                BENCH,
                f"{w}_added_p50_ms_{label}",
                added,
                "ms",
                percentile(samples["direct"], 50) / 1e6,
                baseline_is=f"the upstream's own p50 at {n} client(s); value = gateway p50 - it",
                target=f"<= {TARGET_ADDED_P50_MS:g} ms",
                target_met=added <= TARGET_ADDED_P50_MS,
                clients=n,
                path=path,
            )
        emit(
            BENCH,
            f"{w}_server_cpu_us_per_request",
            gw.loaded.server_cpu_s / max(gw.loaded.ok, 1) * 1e6,
            "us",
            direct.loaded.server_cpu_s / max(direct.loaded.ok, 1) * 1e6,
            baseline_is="the upstream's CPU per request, asked directly",
            upstream_cpu_us_behind_gateway=round(gw.upstream_cpu_s / max(gw.loaded.ok, 1) * 1e6, 1),
            path=path,
        )
        report_phases(w, gw, direct, path)
        for name in RELAYS:
            if (w, name) in results:
                report_relay(w, results, clients, name)
        for t in {t for (_, t) in results}:
            if results[(w, t)].loaded.other:
                note(f"{BENCH}: {w}: non-200 answers from {t}: {results[(w, t)].loaded.other}")


def report_relay(
    w: str, results: dict[tuple[str, str], Measured], clients: int, name: str = "relay"
) -> None:
    """A relay (``RELAYS``: the bare one, the lean ones, nginx) against the upstream, and the
    gateway against the bare relay."""
    relay, direct, gw = (results[(w, t)] for t in (name, "direct", "gateway"))
    what = RELAYS[name]
    path = WORKLOADS[w]
    direct_rate = direct.loaded.ok / direct.loaded.wall_s
    common = {"clients": clients, "path": path}
    emit(
        BENCH,
        f"{w}_{name}_requests_per_s",
        relay.loaded.ok / relay.loaded.wall_s,
        "1/s",
        direct_rate,
        baseline_is=f"the upstream asked directly, same run; value: through {what}",
        **common,
    )
    if name == "relay":
        emit(
            BENCH,
            f"{w}_requests_per_s_of_relay",
            gw.loaded.ok / gw.loaded.wall_s,
            "1/s",
            relay.loaded.ok / relay.loaded.wall_s,
            baseline_is=f"{what}, same run",
            **common,
        )
    alone = {
        t: percentile(sorted(m.alone.latencies_ns), 50) for t, m in (("r", relay), ("d", direct))
    }
    emit(
        BENCH,
        f"{w}_{name}_added_p50_ms_alone",
        (alone["r"] - alone["d"]) / 1e6,
        "ms",
        alone["d"] / 1e6,
        baseline_is=f"the upstream's own p50 at 1 client; value = p50 through {what} - it",
        clients=1,
        path=path,
    )
    emit(
        BENCH,
        f"{w}_{name}_server_cpu_us_per_request",
        relay.loaded.server_cpu_s / max(relay.loaded.ok, 1) * 1e6,
        "us",
        direct.loaded.server_cpu_s / max(direct.loaded.ok, 1) * 1e6,
        baseline_is="the upstream's CPU per request, asked directly",
        path=path,
    )


def profile_run(tmp: Path, issuer: Issuer, tokens: list[str], args: argparse.Namespace) -> None:
    """The gateway under cProfile through ``masked`` and ``pass`` (see the module's doc)."""
    out = str(Path(args.profile).resolve())
    with processes(tmp, issuer, profile=out) as procs, asyncio.Runner(loop_factory=new_loop) as r:
        (port, pid), upstream_pid = procs["gateway"], procs["direct"][1]
        loads = {w: payloads(port, WORKLOADS[w], tokens) for w in ("masked", "pass")}
        for load in loads.values():
            r.run(drive(port, load, args.clients, args.warmup, (pid, upstream_pid)))
        os.kill(pid, signal.SIGUSR1)
        own_before, all_before, ok = own_cpu_seconds(pid), _cpu_seconds(pid), 0
        for w, load in loads.items():
            run, _ = r.run(drive(port, load, args.clients, args.seconds, (pid, upstream_pid)))
            note(f"{BENCH}: under cProfile, {w}: {run.ok / run.wall_s:,.0f} ok/s, {run.ok} ok")
            ok += run.ok
        own = own_cpu_seconds(pid) - own_before
        writer = _cpu_seconds(pid) - all_before - own
        per = {"gateway": own / max(ok, 1) * 1e6, "audit writer": writer / max(ok, 1) * 1e6}
        note(f"{BENCH}: CPU a request (under cProfile): " + ", ".join(
            f"{k} {v:.0f} us" for k, v in per.items()))  # fmt: skip
    stats = pstats.Stats(out, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~20 s run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=None, help="per target per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=None, help="seconds per target")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also through the lean Python relays and nginx (if installed)",
    )
    parser.add_argument("--workers", type=int, default=1, help="gateway processes")
    parser.add_argument(
        "--redis", action="store_true", help="count in the local Redis (implied by --workers)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--profile", default=None, help="profile the gateway instead; stats to FILE"
    )
    args = parser.parse_args(argv)
    args.redis = args.redis or args.workers > 1
    args.seconds = args.seconds or (1.5 if args.quick else 5.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="piigate-bench-gw-"))
    issuer = Issuer()
    try:
        tokens = [issuer.token(f"user-{i}") for i in range(100)]
        if args.profile:
            profile_run(tmp, issuer, tokens, args)
            return 0
        # One process: its /metrics says where its time goes (workers would each need theirs).
        metrics_port = free_port() if args.workers == 1 else None
        running = processes(
            tmp,
            issuer,
            reference=args.reference,
            workers=args.workers,
            redis=args.redis,
            metrics_port=metrics_port,
        )
        with running as procs:
            note(f"{BENCH}: up in {time.monotonic() - started:.1f} s: {procs}")
            phases_url = None if metrics_port is None else f"http://{HOST}:{metrics_port}/metrics"
            results = measure(procs, tokens, args, phases_url)
        report(results, args.clients)
        kept = f"; kept {tmp}" if args.keep else ""
        note(f"{BENCH}: finished in {time.monotonic() - started:.1f} s{kept}")
    finally:
        issuer.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
