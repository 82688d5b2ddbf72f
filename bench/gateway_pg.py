"""The PostgreSQL gateway (``piigate gateway postgres``) against the server it fronts, same run.

Run: ``.venv/bin/python bench/gateway_pg.py [--quick] [--floor] [--reference] [--profile F]``.
Needs pgbench and a PostgreSQL server (``--database-url``, default
``postgresql://postgres@127.0.0.1:5432/postgres``, a role that may create databases). Prints
one JSON object per line on stdout (progress on stderr). See docs/BENCHMARKS.md; nothing here
asserts on time.

What runs:
- a scratch database ``piigate_bench_<hex>`` (dropped afterwards) with ``pgbench -i -s 1`` and
  ``bench_people (id, name, ssn)`` of 10,000 rows;
- two gateways, each ``piigate gateway postgres --config`` in a process of its own (launched by
  this file re-run with ``--serve CONFIG``), on SQLite in a temporary data directory, with a
  small policy where reading ``ssn`` needs ``aal2`` (``otherwise: mask``): ``masked`` catalogues
  ``public.bench_people.ssn``, ``plain`` only ``pgbench_history.filler`` (read by nothing
  here). Clients give a piigate API key (``piigate keys create``) as their password, so every
  read of ``ssn`` is masked;
- ``pgbench -S`` (8 clients, 2 threads; ``-M simple``, ``extended``, ``prepared``) through the
  ``masked`` gateway and straight to the server, rounds alternating the order. The pgbench
  tables are not catalogued: no statement carries PII, so the gateway reads, rules (no decision
  is asked when nothing is PII) and relays;
- ``SELECT id, name, ssn FROM bench_people`` (10,000 rows, psycopg, the simple protocol) through
  ``masked`` (ssn masked), ``plain`` (nothing to mask) and straight to the server;
- in process: ``RowMask.apply`` on the same 10,000 rows, no sockets.
- ``--floor``: ``pgbench -S`` through bench/byte_relay.py too, in the same rounds: the least a
  relay in Python costs. ``--reference``: through PgBouncer too (bench/_reference_proxies.py),
  what a compiled proxy reaches on this machine. ``--profile FILE``: then a ``masked`` gateway
  under cProfile from its warm-up on, for ``pgbench -S``; top functions to stderr, the stats to
  FILE.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

import _reference_proxies as reference_proxies
from _common import emit, note, summary, wait_listening, wait_workers
from api import HOST, ScratchPostgres, _cpu_seconds, bench_env, create_key, free_port, stop
from byte_relay import byte_relay

BENCH = "gateway_pg"
ROWS = 10_000
TARGET_TPS_RATIO = 0.6
TARGET_MASK_US = 5.0
MODES = ("simple", "extended", "prepared")
PEOPLE_QUERY = "SELECT id, name, ssn FROM bench_people ORDER BY id"
POLICY = {
    "version": 1,
    "levels": {"aal1": {"acr": "urn:piigate:aal1"}, "aal2": {"acr": "urn:piigate:aal2"}},
    "pii": {"ssn": {"sensitivity": "high"}, "phone": {"sensitivity": "medium"}},
    "factors": {"totp": {"level": "aal2"}},
    "rules": [
        {
            "name": "read-ssn",
            "when": {"pii": ["ssn"], "action": ["read"]},
            "require": {"level": "aal2", "max_age": "5m"},
            "otherwise": "mask",
        }
    ],
}


def serve(config: str, profile: str | None) -> None:
    """``piigate gateway postgres --config CONFIG`` in this process. With ``profile``, cProfile
    runs from the first SIGUSR1 (sent once the gateway is warm, so start-up is not in it) and
    its stats are written when the gateway stops on SIGTERM."""
    from piigate.cli import main as cli

    sys.argv = ["piigate", "gateway", "postgres", "--config", config]
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
    try:
        cli()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)


# -- setting up ----------------------------------------------------------------------------
def prepare(db: ScratchPostgres, scale: int) -> None:
    """``pgbench -i`` and ``bench_people`` in the scratch database."""
    import psycopg

    run_pgbench(db, ["-i", "-q", "-s", str(scale)])
    with psycopg.connect(db.url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("CREATE TABLE bench_people (id int PRIMARY KEY, name text, ssn text)")
        conn.execute(
            "INSERT INTO bench_people SELECT n, 'Person ' || n, "
            "lpad((100 + n % 800)::text, 3, '0') || '-' || lpad((10 + n % 89)::text, 2, '0')"
            f" || '-' || lpad((n % 10000)::text, 4, '0') FROM generate_series(1, {ROWS}) AS n"
        )
        conn.execute("ANALYZE")


def write_config(
    tmp: Path,
    name: str,
    db: ScratchPostgres,
    port: int,
    catalog: dict[str, object],
    workers: int = 1,
) -> Path:
    from sqlalchemy import make_url

    url = make_url(db.url)
    upstream = f"postgresql://{url.username}@{url.host or HOST}:{url.port or 5432}/{db.name}"
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False))
    config = tmp / f"{name}.yaml"
    postgres: dict[str, object] = {"listen": f"{HOST}:{port}", "upstream": upstream}
    postgres["approval_wait"] = "0s"
    postgres["catalog"] = catalog
    if workers > 1:
        postgres["workers"] = workers
    document = {
        "policy": str(policy),
        "service": {"data_dir": str(tmp / "data"), "public_url": "http://127.0.0.1:8080"},
        "gateway": {"postgres": postgres},
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


CATALOGS: dict[str, dict[str, object]] = {
    "masked": {"public.bench_people": {"ssn": "ssn"}},
    # A catalog is required: one column no statement here reads.
    "plain": {"public.pgbench_history": {"filler": "phone"}},
}


@contextlib.contextmanager
def gateways(
    tmp: Path,
    db: ScratchPostgres,
    env: dict[str, str],
    names: list[str],
    profile: str | None = None,
    workers: int = 1,
) -> Iterator[dict[str, tuple[int, int]]]:
    """The named gateways, each ``name -> (port, pid)``, stopped afterwards."""
    procs: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for name in names:
            port = free_port()
            config = write_config(tmp, name, db, port, CATALOGS[name], workers)
            command = [sys.executable, str(Path(__file__)), "--serve", str(config)]
            if profile:
                command += ["--profile-out", profile]
            log = tmp / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            procs[name] = (port, proc)
            wait_listening(port, proc, log)
            wait_workers(log, workers)
        yield {name: (port, proc.pid) for name, (port, proc) in procs.items()}
    finally:
        for _, proc in procs.values():
            stop(proc)


# -- pgbench -------------------------------------------------------------------------------
def run_pgbench(
    db: ScratchPostgres, args: list[str], port: int | None = None, password: str | None = None
) -> str:
    from sqlalchemy import make_url

    url = make_url(db.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    where = ["-h", url.host or HOST, "-p", str(port or url.port or 5432)]
    command = ["pgbench", *where, "-U", url.username or "postgres", *args, db.name]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
_TXNS = re.compile(r"number of transactions actually processed: (\d+)")


def pgbench_select(
    db: ScratchPostgres,
    mode: str,
    seconds: float,
    clients: int,
    target: tuple[int, int] | None,
    key: str,
) -> tuple[float, int, float]:
    """TPS, transactions and the gateway's CPU seconds (0 direct) of one ``pgbench -S`` run."""
    args = ["-S", "-n", "-M", mode, "-c", str(clients), "-j", "2", "-T", str(int(seconds))]
    before = _cpu_seconds(target[1]) if target else 0.0
    out = run_pgbench(db, args, target[0] if target else None, key if target else None)
    cpu = _cpu_seconds(target[1]) - before if target else 0.0
    tps, txns = _TPS.search(out), _TXNS.search(out)
    if tps is None or txns is None:
        raise RuntimeError(f"cannot read pgbench's output: {out[-1000:]}")
    return float(tps.group(1)), int(txns.group(1)), cpu


def measure_pgbench(
    db: ScratchPostgres,
    targets: dict[str, tuple[int, int] | None],
    key: str,
    args: argparse.Namespace,
) -> None:
    """``pgbench -S`` through each of ``targets`` (``gateway``, ``direct``: None, and with
    ``--floor`` the byte relay), in rounds that alternate their order."""
    for mode in MODES if not args.quick else ("simple",):
        for target in targets.values():
            pgbench_select(db, mode, 2, args.clients, target, key)  # warm-up: caches, connections
        runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in targets}
        for r in range(args.rounds):
            for t in list(targets) if r % 2 == 0 else list(reversed(targets)):
                got = pgbench_select(db, mode, args.seconds, args.clients, targets[t], key)
                runs[t].append(got)
                note(f"{BENCH}: pgbench -S -M {mode} round {r + 1}/{args.rounds} {t}: "
                     f"{got[0]:,.0f} tps")  # fmt: skip
        tps = {t: sum(x[0] for x in v) / len(v) for t, v in runs.items()}
        cpu = {
            t: sum(x[2] for x in v) / max(sum(x[1] for x in v), 1) * 1e6 for t, v in runs.items()
        }
        common = {"clients": args.clients, "mode": mode, "seconds": args.seconds,
                  "rounds": args.rounds}  # fmt: skip
        emit(BENCH, f"pgbench_select_{mode}_tps", tps["gateway"], "1/s", tps["direct"],
             baseline_is="pgbench -S straight to the server, same run, rounds alternating",
             target=f">= {TARGET_TPS_RATIO:g} x baseline",
             target_met=tps["gateway"] >= TARGET_TPS_RATIO * tps["direct"], **common)  # fmt: skip
        emit(BENCH, f"pgbench_select_{mode}_gateway_cpu_us_per_txn", cpu["gateway"], "us", 0.0,
             baseline_is="none (the gateway's own CPU, its process and children)",
             **common)  # fmt: skip
        for other, what in (("floor", "bench/byte_relay.py"), ("pgbouncer", "PgBouncer")):
            if other not in runs:
                continue
            emit(BENCH, f"pgbench_select_{mode}_{other}_tps", tps[other], "1/s", tps["direct"],
                 baseline_is="pgbench -S straight to the server, same run, rounds alternating; "
                 f"value: through {what}", **common)  # fmt: skip
            emit(BENCH, f"pgbench_select_{mode}_{other}_cpu_us_per_txn", cpu[other], "us", 0.0,
                 baseline_is=f"none ({what}'s own CPU)", **common)  # fmt: skip


# -- masking -------------------------------------------------------------------------------
def fetch_people(dsn: str, calls: int) -> tuple[list[int], list[tuple[object, ...]]]:
    import psycopg

    samples: list[int] = []
    rows: list[tuple[object, ...]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PEOPLE_QUERY).fetchall()  # warm-up
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            rows = conn.execute(PEOPLE_QUERY).fetchall()
            samples.append(time.perf_counter_ns() - t0)
    return samples, rows


def measure_masking(
    db: ScratchPostgres, gws: dict[str, tuple[int, int]], key: str, args: argparse.Namespace
) -> None:
    from sqlalchemy import make_url

    url = make_url(db.url)
    base = f"host={url.host or HOST} user={url.username} dbname={db.name} sslmode=disable"
    dsns = {
        "direct": f"{base} port={url.port or 5432}",
        **{name: f"{base} port={port} password={key}" for name, (port, _) in gws.items()},
    }
    timed: dict[str, list[int]] = {name: [] for name in dsns}
    seen: dict[str, list[tuple[object, ...]]] = {}
    names = list(dsns)
    for r in range(args.rounds * 2):
        for name in names if r % 2 == 0 else reversed(names):
            samples, seen[name] = fetch_people(dsns[name], args.fetches)
            timed[name].extend(samples)
    if seen["plain"] != seen["direct"] or len(seen["masked"]) != ROWS:
        raise RuntimeError("the plain gateway changed the rows, or rows went missing")
    if any(
        m[2] == d[2] or m[:2] != d[:2] for m, d in zip(seen["masked"], seen["direct"], strict=True)
    ):
        raise RuntimeError("an ssn went through unmasked, or another column changed")
    got = {name: summary(samples) for name, samples in timed.items()}
    per_row = (got["masked"]["p50"] - got["plain"]["p50"]) / ROWS
    extra = {"rows": ROWS, "samples": got["masked"]["n"], "query": PEOPLE_QUERY}
    emit(BENCH, "mask_added_per_row_us", per_row, "us", got["plain"]["p50"] / ROWS,
         baseline_is="the same query through a gateway that masks nothing, p50 per row; "
         "value = (masked p50 - plain p50) / rows", target=f"<= {TARGET_MASK_US:g} us",
         target_met=per_row <= TARGET_MASK_US, **extra)  # fmt: skip
    for name in ("masked", "plain"):
        emit(BENCH, f"people_{name}_p50_ms", got[name]["p50"] / 1000, "ms",
             got["direct"]["p50"] / 1000, baseline_is="the same query straight to the server, "
             "p50, same run", p99_ms=round(got[name]["p99"] / 1000, 3), **extra)  # fmt: skip


def measure_rowmask(args: argparse.Namespace) -> None:
    """``RowMask.apply`` (and with ``encode``) per row, in process; baseline: ``encode`` alone."""
    from piigate.gateway.http.masking import default_rule
    from piigate.gateway.postgres import backend as be
    from piigate.gateway.postgres.rows import row_mask

    fields = [be.FieldDescription("id", 1, 1, 23, 4), be.FieldDescription("name", 1, 2),
              be.FieldDescription("ssn", 1, 3)]  # fmt: skip
    carried = [frozenset(), frozenset(), frozenset({"ssn"})]
    mask = row_mask(fields, carried, frozenset({"ssn"}), {"ssn": default_rule("ssn")})
    assert mask is not None
    ssns = [f"{100 + n % 800:03d}-{10 + n % 89:02d}-{n % 10000:04d}" for n in range(ROWS)]
    rows = [
        be.DataRow((str(n).encode(), f"Person {n}".encode(), ssns[n].encode())) for n in range(ROWS)
    ]
    fns = {
        "apply": lambda: [mask.apply(r) for r in rows],
        "apply_encode": lambda: [mask.apply(r).encode() for r in rows],
        "encode": lambda: [r.encode() for r in rows],
    }
    timed: dict[str, list[int]] = {name: [] for name in fns}
    gc.collect()
    for r in range(args.rounds * 2):
        for name, fn in fns.items() if r % 2 == 0 else reversed(fns.items()):
            for _ in range(5):
                t0 = time.perf_counter_ns()
                fn()
                timed[name].append(time.perf_counter_ns() - t0)
    base = summary(timed["encode"])["p50"] / ROWS
    for name in ("apply", "apply_encode"):
        emit(BENCH, f"rowmask_{name}_per_row_us", summary(timed[name])["p50"] / ROWS, "us", base,
             baseline_is="DataRow.encode of the unmasked row, per row, in process, same run",
             rows=ROWS, samples=len(timed[name]))  # fmt: skip


# -- profile -------------------------------------------------------------------------------
def profile_run(
    tmp: Path, db: ScratchPostgres, env: dict[str, str], key: str, args: argparse.Namespace
) -> None:
    out = str(Path(args.profile).resolve())
    with gateways(tmp, db, env, ["masked"], profile=out) as gws:
        pgbench_select(db, "simple", 2, args.clients, gws["masked"], key)  # warm-up
        os.kill(gws["masked"][1], signal.SIGUSR1)  # start profiling
        for mode in ("simple", "prepared"):
            tps, _, _ = pgbench_select(db, mode, args.seconds, args.clients, gws["masked"], key)
            note(f"{BENCH}: under cProfile, pgbench -S -M {mode}: {tps:,.0f} tps")
    stats = pstats.Stats(out, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


def reference(
    tmp: Path, db: ScratchPostgres, to: tuple[str, int]
) -> contextlib.AbstractContextManager[tuple[int, int] | None]:
    """PgBouncer in front of the server (``--reference``), or nothing, said why."""
    if (missing := reference_proxies.available("pgbouncer")) is not None:
        note(f"{BENCH}: no reference run: {missing}")
        return contextlib.nullcontext()
    return reference_proxies.pgbouncer(tmp, *to, db.admin.username or "postgres")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~40 s run")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None, help="per pgbench run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--fetches", type=int, default=None, help="10,000-row reads per round")
    parser.add_argument("--profile", default=None, help="also profile a gateway; stats to FILE")
    parser.add_argument("--floor", action="store_true", help="also pgbench through a byte relay")
    parser.add_argument(
        "--reference", action="store_true", help="also pgbench through PgBouncer (if installed)"
    )
    parser.add_argument("--workers", type=int, default=1, help="gateway processes (workers: N)")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.profile_out)
        return 0
    args.seconds = args.seconds or (3 if args.quick else 8)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.fetches = args.fetches or (3 if args.quick else 8)
    if shutil.which("pgbench") is None:
        note(f"{BENCH}: pgbench is not installed")
        return 1
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="piigate-bench-pg-"))
    db = ScratchPostgres(args.database_url)
    try:
        prepare(db, 1)
        env = bench_env(tmp / "data")
        key = create_key(env)
        measure_rowmask(args)
        to = (db.admin.host or HOST, db.admin.port or 5432)
        floor = byte_relay(tmp, *to) if args.floor else contextlib.nullcontext()
        bouncer = reference(tmp, db, to) if args.reference else contextlib.nullcontext()
        if args.workers > 1:  # what the engine counts, shared by the workers
            env["PIIGATE_REDIS_URL"] = "redis://127.0.0.1:6379/15"
        pair = gateways(tmp, db, env, ["masked", "plain"], workers=args.workers)
        with pair as gws, floor as relay, bouncer as pgb:
            note(f"{BENCH}: up in {time.monotonic() - started:.1f} s: {gws}")
            targets = {"gateway": gws["masked"], "direct": None}
            if relay is not None:
                targets["floor"] = relay
            if pgb is not None:
                targets["pgbouncer"] = pgb
            measure_pgbench(db, targets, key, args)
            measure_masking(db, gws, key, args)
        if args.profile:
            profile_run(tmp, db, env, key, args)
        note(f"{BENCH}: finished in {time.monotonic() - started:.1f} s")
    finally:
        db.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
