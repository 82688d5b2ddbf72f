"""The HTTP gateway's upstream client and JSON codec, chosen by measurement.

Run: ``PYTHONPATH=src .venv/bin/python bench/upstream_clients.py [--quick]``. Prints one JSON
object per line on stdout (progress on stderr); nothing here asserts on time. ~45 s (``--quick``
~12 s).

What runs:
- the upstream: this file re-run with ``--serve-upstream PORT``, a raw ASGI app under uvicorn
  (one process, uvloop, httptools) answering ``GET /customer`` with a 1 KB JSON customer record
  and ``GET /export`` with a 1 MiB body, both with ``Content-Length``;
- in this process, on uvloop, 32 tasks in closed loops (request, read the whole answer, next)
  through each client in turn, for a fixed time. The floor is bench/api.py's load generator (a
  minimal asyncio protocol, one keep-alive connection per task, which receives the answer's
  bytes and drops them): the least any client can cost. The candidates are
  ``httpx.AsyncClient``, ``aiohttp.ClientSession`` and, when installed, ``httpx2`` (a drop-in
  fork of httpx), each one pooled client (32 connections) shared by the 32 tasks, as the
  gateway would hold it. ``/customer`` is read whole (``response.content`` / ``await
  response.read()``), ``/export`` chunk by chunk as the transport delivers it (``aiter_raw()``
  / ``content.iter_any()``), as a proxy forwards it. Rounds alternate the clients (order
  flipped each round) so drift in load hits them alike. The client CPU per request
  (``time.process_time``) is the client's own cost, the one to compare; requests/s on two cores
  also depends on how much CPU the upstream gets (``upstream_cpu_share``, in cores);
- then, in process, the JSON codecs on the 1 KB record and a 100 KB page of 100 records
  (bench/_json_codecs.py): parse, serialise, and both (what the gateway does to a response it
  masks), each line saying what the codec does to a decimal amount beyond a double's precision
  and an integer beyond 64 bits (``numbers``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _common import emit, note, summary
from _json_codecs import PROBE_AMOUNT, run_codecs
from api import HOST, _Connection, _cpu_seconds, free_port, new_loop, stop, wait_ready
from gateway_masking import customer

BENCH = "upstream_clients"
TASKS = 32
BIG = 1 << 20
_EXACT_MARK = "@@exact@@"
# httpcore 1.0.9 imports sniffio on every lock it sets up (twice a request); without sniffio
# installed (anyio 4.11+ no longer brings it) each failed import searches sys.path anew.
SNIFFIO = importlib.util.find_spec("sniffio") is not None


def record(n: int) -> dict[str, object]:
    """A customer record of ~1 KB as an upstream API returns it (amounts as JSON numbers)."""
    doc = customer(n)
    doc["credit_limit"] = 2500.0 + n % 7 * 250
    doc["lifetime_volume"] = _EXACT_MARK
    doc["transactions"] = [
        {
            "id": f"txn_{n:06d}_{i}",
            "amount": round(12.34 * (i + 1) + n % 100, 2),
            "currency": "EUR",
            "booked_at": f"2026-05-0{i + 1}T09:30:00Z",
            "reference": f"Invoice {n}-{i}",
        }
        for i in range(4)
    ]
    return doc


def document_bytes(doc: object) -> bytes:
    """``doc`` as JSON, with an amount that a float cannot carry (a double rounds it)."""
    text = json.dumps(doc, separators=(",", ":"))
    return text.replace(f'"{_EXACT_MARK}"', PROBE_AMOUNT).encode()


# -- the upstream ----------------------------------------------------------------------------
def serve_upstream(port: int) -> None:
    """A raw ASGI app under uvicorn: the least an upstream can cost per request."""
    import uvicorn

    bodies = {"/customer": document_bytes(record(42)), "/export": b"x" * BIG, "/readyz": b"{}"}
    heads = {
        path: [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        for path, body in bodies.items()
    }

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"] if scope["path"] in bodies else "/readyz"
        await send({"type": "http.response.start", "status": 200, "headers": heads[path]})
        await send({"type": "http.response.body", "body": bodies[path]})

    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=120,  # a pool idle while the other clients run keeps its connections
    )
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(uvicorn.Server(config).serve())


# -- the clients -----------------------------------------------------------------------------
class Client:
    """One way to make the proxy's request: ``call(path)`` returns the chunks it read."""

    name = "?"

    async def call(self, path: str) -> int:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class Floor(Client):
    """bench/api.py's load generator: one keep-alive connection per task, taken and put back."""

    name = "raw"

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[_Connection] = []

    async def call(self, path: str) -> int:
        conn = self.idle.pop() if self.idle else await self._open()
        if conn.transport is None or conn.transport.is_closing():
            conn = await self._open()
        status = await conn.request(b"GET %s HTTP/1.1\r\nHost: upstream\r\n\r\n" % path.encode())
        if status != 200:
            raise RuntimeError(f"upstream answered {status}")
        self.idle.append(conn)
        return 1

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, HOST, self.port)
        return conn

    async def aclose(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()


class Httpx(Client):
    """``httpx.AsyncClient``, or the same API from a drop-in fork of it (``httpx2``)."""

    def __init__(self, port: int, module: Any = httpx) -> None:
        self.name = module.__name__
        self.client = module.AsyncClient(
            base_url=f"http://{HOST}:{port}",
            limits=module.Limits(max_connections=TASKS, max_keepalive_connections=TASKS),
            timeout=module.Timeout(10.0, connect=2.0, pool=5.0),
            follow_redirects=False,
        )

    async def call(self, path: str) -> int:
        if path != "/export":
            response = await self.client.get(path)
            response.raise_for_status()
            return 1 if response.content else 0
        chunks = 0
        async with self.client.stream("GET", path) as response:
            response.raise_for_status()
            async for _chunk in response.aiter_raw():
                chunks += 1
        return chunks

    async def aclose(self) -> None:
        await self.client.aclose()


class Aiohttp(Client):
    name = "aiohttp"

    def __init__(self, port: int) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            f"http://{HOST}:{port}",
            connector=aiohttp.TCPConnector(limit=TASKS, keepalive_timeout=30.0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=10.0),
            auto_decompress=False,
            raise_for_status=True,
        )

    async def call(self, path: str) -> int:
        async with self.session.get(path) as response:
            if path != "/export":
                return 1 if await response.read() else 0
            chunks = 0
            async for _chunk in response.content.iter_any():
                chunks += 1
            return chunks

    async def aclose(self) -> None:
        await self.session.close()


def clients(port: int) -> list[Client]:
    out: list[Client] = [Floor(port), Httpx(port)]
    try:
        out.append(Aiohttp(port))
    except ImportError:
        note(f"{BENCH}: aiohttp is not installed, measured without it")
    with contextlib.suppress(ImportError):  # measured when installed, not a dependency
        import httpx2

        out.append(Httpx(port, httpx2))
    return out


# -- the load --------------------------------------------------------------------------------
@dataclass
class Load:
    """What the timed windows of one client on one path produced."""

    latencies_ns: list[int] = field(default_factory=list)
    chunks: int = 0
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


async def drive(call: Callable[[], Awaitable[int]], seconds: float, pid: int, load: Load) -> None:
    """``TASKS`` closed loops through one client for ``seconds``; every request is awaited."""
    clock = time.perf_counter_ns
    stop_at = clock() + int(seconds * 1e9)
    per_task: list[list[int]] = [[] for _ in range(TASKS)]
    counts = [0] * TASKS

    async def task(i: int) -> None:
        lat = per_task[i]
        while (t0 := clock()) < stop_at:
            counts[i] += await call()
            lat.append(clock() - t0)

    cpu0, server0, wall0 = time.process_time(), _cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(TASKS)))
    load.wall_s += time.perf_counter() - wall0
    load.client_cpu_s += time.process_time() - cpu0
    load.server_cpu_s += _cpu_seconds(pid) - server0
    load.chunks += sum(counts)
    for lat in per_task:
        load.latencies_ns.extend(lat)


async def measure(port: int, pid: int, rounds: int, seconds: float) -> dict[tuple[str, str], Load]:
    """Warm-up, then ``rounds`` alternating the clients on both paths."""
    pool = clients(port)
    loads: dict[tuple[str, str], Load] = {}
    try:
        for client in pool:  # warm-up: the pools fill, the code paths warm
            for path in ("/customer", "/export"):
                await drive(lambda c=client, p=path: c.call(p), 0.3, pid, Load())
        gc.collect()
        for r in range(rounds):
            order = pool if r % 2 == 0 else pool[::-1]
            for path in ("/customer", "/export"):
                for client in order:
                    load = loads.setdefault((client.name, path), Load())
                    await drive(lambda c=client, p=path: c.call(p), seconds, pid, load)
    finally:
        for client in pool:
            await client.aclose()
    return loads


METRICS = (("per_s", "req/s"), ("p50", "ms"), ("p99", "ms"), ("client_cpu_per_req", "us"))


def report_http(loads: dict[tuple[str, str], Load]) -> None:
    """Each candidate against the floor (the ratio), and against the fastest candidate."""
    names = [name for name, path in loads if path == "/customer"]
    base_is = "bench/api.py's minimal asyncio keep-alive client (the floor), same run"
    for path, label in (("/customer", "get_1kb"), ("/export", "stream_1mb")):
        stats = {name: _stats(loads[(name, path)]) for name in names}
        candidates = [name for name in names if name != "raw"]
        fastest = max(candidates, key=lambda n: stats[n]["per_s"])
        for name in candidates:
            got = stats[name]
            extra = {
                "requests": got["n"],
                "fastest": fastest,
                "per_s_vs_fastest": round(got["per_s"] / stats[fastest]["per_s"], 3),
                "upstream_cpu_share": got["server_share"],
                "floor_upstream_cpu_share": stats["raw"]["server_share"],
            }
            if path == "/export":
                extra["mean_chunk_kib"] = got["chunk_kib"]
            if name == "httpx":
                extra["sniffio_installed"] = SNIFFIO
            for metric, unit in METRICS:
                metric_name, floor = f"{label}_{name}_{metric}", stats["raw"][metric]
                emit(BENCH, metric_name, got[metric], unit, floor, baseline_is=base_is, **extra)


def _stats(load: Load) -> dict[str, float]:
    lat = summary(load.latencies_ns)
    n = len(load.latencies_ns)
    return {
        "n": n,
        "per_s": n / load.wall_s,
        "p50": lat["p50"] / 1000,
        "p99": lat["p99"] / 1000,
        "client_cpu_per_req": load.client_cpu_s / n * 1e6,
        "chunk_kib": round(n * BIG / max(load.chunks, 1) / 1024, 1),
        "server_share": round(load.server_cpu_s / load.wall_s, 2),
    }


@contextlib.contextmanager
def upstream() -> Iterator[tuple[int, int]]:
    """The upstream process on a free port: its port and pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "upstream.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve-upstream", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_ready(port, proc, log, timeout=30)
            yield port, proc.pid
        finally:
            stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~15 s run")
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    rounds, seconds = (1, 1.0) if args.quick else (2, 2.0)
    started = time.monotonic()
    with upstream() as (port, pid), asyncio.Runner(loop_factory=new_loop) as runner:
        loads = runner.run(measure(port, pid, rounds, seconds))
    note(f"{BENCH}: clients, {rounds} rounds in {time.monotonic() - started:.1f} s")
    report_http(loads)
    page = {"customers": [record(i) for i in range(100)]}
    run_codecs({"1kb": document_bytes(record(42)), "100kb": document_bytes(page)}, quick=args.quick)
    note(f"{BENCH}: {time.monotonic() - started:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
