"""What alerts and their sinks cost the decisions of a node: decisions per second with the
monitoring's watcher, and with the watcher and all three sinks, against the same node with its
monitoring stopped, under the same load in the same run.

Run: ``.venv/bin/python bench/alerts.py [--quick]``. One JSON object per line on stdout
(progress on stderr); see docs/BENCHMARKS.md. Nothing here asserts on time.

What runs, in this process on one event loop:
- three nodes (``Services``), each on its own SQLite store in a temporary directory, with the
  generated 50-rule policy (bench/_common.py) and the audit group commit in a thread:
  ``off`` (its monitoring task cancelled: no watcher, no alerts), ``watcher`` (the alert desk
  follows every committed event, no sinks) and ``sinks`` (the desk and a webhook, a JSON-lines
  file and syslog over UDP). The webhook's receiver is a child process (this file with
  ``--receive PORT``), so its CPU is not the node's; syslog goes to a loopback UDP port;
- the load: 32 tasks, each a closed loop over ``Engine.decide`` (the audited decision, as the
  API's routes call it) rotating through the same 100 requests; one step in 100 instead commits
  an ``alert`` event (a denied push, as ``factors/push/answers.py`` records it), which the
  watcher turns into an alert (stored, announced, counted, and sent to the sinks);
- warm-up, then rounds that alternate the nodes, the order rotated every round; for each
  round, decisions per second and the process's CPU (every thread: the loop, the store's) per
  decision, which a loaded machine disturbs less than throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
from _common import emit, logs_to_stderr, note
from piigate.api.services import Services
from piigate.audit.sink_settings import (
    AlertSettings,
    JsonLinesSettings,
    SyslogSettings,
    WebhookSettings,
)
from piigate.config import Settings
from piigate.crypto.secret import Secret
from piigate.decision_request import DecisionRequestIn
from piigate.model import AccessRequest
from piigate.policy.holder import PolicyHolder

BENCH = "alerts"
CONCURRENCY = 32
ALERT_EVERY = 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def receive(port: int) -> None:
    """The webhook's receiver: answers every POST with 204."""
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def start_node(where: Path, policy: Path, alerts: AlertSettings) -> Services:
    await asyncio.to_thread(where.mkdir, mode=0o700)
    settings = Settings(
        policy_path=str(policy), data_dir=where, audit_writer="thread", alerts=alerts
    )
    services = Services(settings, policy=PolicyHolder.from_file(str(policy)))
    await services.start()
    return services


def stop_monitoring(services: Services) -> None:
    for task in services._tasks:  # a bench may reach in: the node without its monitoring
        if task.get_name() == "piigate-monitoring":
            task.cancel()


async def load(services: Services, requests: list[AccessRequest], seconds: float) -> int:
    """Decisions made by ``CONCURRENCY`` closed loops in ``seconds``."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    steps = itertools.count()
    decided = 0

    async def worker() -> None:
        nonlocal decided
        while loop.time() < ends:
            step = next(steps)
            if step % ALERT_EVERY == ALERT_EVERY - 1:
                data = {"kind": "push_denied", "challenge_id": f"chl_{step}", "push_id": "cer_b"}
                await services.audit.record("alert", subject_id="u1", data=data)
                continue
            await services.engine.decide(requests[step % len(requests)])
            decided += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return decided


async def run(quick: bool) -> None:
    rounds, seconds, warm = (1, 2.0, 1.0) if quick else (4, 6.0, 3.0)
    port = _free_port()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--receive", str(port)
    )
    with tempfile.TemporaryDirectory(prefix="piigate-bench-alerts-") as tmp:
        root = Path(tmp)
        policy = root / "policy.yaml"
        await asyncio.to_thread(policy.write_text, _common.policy_text())
        sinks = AlertSettings(
            webhook=WebhookSettings(
                url=f"http://127.0.0.1:{port}/hook", secret=Secret("bench-secret-0123456789")
            ),
            jsonl=JsonLinesSettings(str(root / "alerts.jsonl")),
            syslog=SyslogSettings(f"udp://127.0.0.1:{_free_port()}", facility="auth"),
        )
        nodes = {
            "off": await start_node(root / "off", policy, AlertSettings()),
            "watcher": await start_node(root / "watcher", policy, AlertSettings()),
            "sinks": await start_node(root / "sinks", policy, sinks),
        }
        stop_monitoring(nodes["off"])
        try:
            compiled = nodes["off"].policy.current
            assert compiled is not None
            bodies = _common.request_bodies(int(time.time()))
            requests = [DecisionRequestIn.model_validate(b).to_domain(compiled) for b, _ in bodies]
            rates: dict[str, list[float]] = {name: [] for name in nodes}
            cpu: dict[str, list[float]] = {name: [] for name in nodes}
            for name, services in nodes.items():
                note(f"warm-up {name}")
                await load(services, requests, warm)
            order = list(nodes)
            for number in range(rounds):
                for name in order:
                    started = time.process_time()
                    made = await load(nodes[name], requests, seconds)
                    cpu[name].append((time.process_time() - started) * 1e6 / made)
                    rates[name].append(made / seconds)
                    note(
                        f"round {number + 1} {name}: {made / seconds:.0f} decisions/s, "
                        f"{cpu[name][-1]:.0f} us CPU each"
                    )
                order = order[1:] + order[:1]
            await _report(nodes, rates, cpu)
        finally:
            for services in nodes.values():
                await services.stop()
            receiver.terminate()
            await asyncio.wait_for(receiver.wait(), 10)


async def _report(
    nodes: dict[str, Services], rates: dict[str, list[float]], cpu: dict[str, list[float]]
) -> None:
    extra: dict[str, Any] = {"concurrency": CONCURRENCY, "alert_every": ALERT_EVERY}
    baseline_is = "the same node with its monitoring stopped"
    for name, is_what in (("watcher", "alert desk, no sinks"), ("sinks", "desk and 3 sinks")):
        for metric, unit, found in (
            ("decisions_per_s", "decisions/s", rates),
            ("cpu_us_per_decision", "us", cpu),
        ):
            value, off = (sum(found[n]) / len(found[n]) for n in (name, "off"))
            emit(
                BENCH,
                f"{metric}_{name}",
                value,
                unit,
                off,
                baseline_is=baseline_is,
                measured=is_what,
                **extra,
            )
    desk = nodes["sinks"].monitoring.desk
    for sink in desk.sinks:
        await asyncio.wait_for(sink.drained(), 60)
    counts = {sink.name: sink.counts.delivered for sink in desk.sinks}
    raised = len(await desk.recent(limit=500))
    note(f"alerts raised on the sinks node (newest 500 counted): {raised}; delivered: {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run with fewer samples")
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logs_to_stderr()
    if args.receive:
        receive(args.receive)
        return
    try:
        import uvloop

        uvloop.run(run(args.quick))
    except ImportError:
        asyncio.run(run(args.quick))


if __name__ == "__main__":
    main()
