"""Two ``piigate serve`` processes on one PostgreSQL database, as a deployment runs them: each
node's events reach the other's bus (over PostgreSQL LISTEN/NOTIFY, or Redis pub/sub when the
nodes share one), and a bulk delete through one node raises its alerts once, on that node,
written by its JSON-lines sink.

Needs PostgreSQL (and Redis for that transport): skips without them, unless
``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback_support import free_port
from serve_support import run_piigate, serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(re.escape(f"{name}{{{rendered}}}") + r" (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def until(probe: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.1)


def alerts_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("transport", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
def test_events_fan_out_and_a_bulk_delete_alerts_once(
    postgres_url: str, tmp_path: Path, transport: str, request: pytest.FixtureRequest
) -> None:
    port_a, port_b = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    base.update(
        PIIGATE_DATABASE_URL=postgres_url,
        PIIGATE_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        PIIGATE_PUBLIC_URL=f"http://127.0.0.1:{port_a}",
        PIIGATE_LOG_FORMAT="json",
    )
    if transport == "redis":
        base["PIIGATE_REDIS_URL"] = request.getfixturevalue("redis_url")
    sinks = {node: tmp_path / f"alerts-{node}.jsonl" for node in ("a", "b")}
    env_a, env_b = (
        {**base, "PIIGATE_DATA_DIR": str(tmp_path / n), "PIIGATE_ALERTS_JSONL": str(sinks[n])}
        for n in ("a", "b")
    )
    key = run_piigate(env_a, "keys", "create", "app", "--scope", "decisions").split()[-1]
    a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    subject = f"eve-{secrets.token_hex(4)}"  # Redis counters may be shared with other runs

    def delete(record: int) -> None:
        body = {
            "subject": {"id": subject},
            "action": "delete",
            "resource": {"type": "customer", "id": str(record)},
            "pii": ["ssn"],
        }
        answer = httpx.post(
            f"{a}/v1/decisions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text

    with serving(env_a, port_a, tmp_path / "a.log"), serving(env_b, port_b, tmp_path / "b.log"):
        records = iter(range(1_000_000))
        # B listens from shortly after it is ready: decide on A until B has heard of it.
        until(
            lambda: (
                delete(next(records))
                or metric(b, "piigate_event_fanout_total", result="received") > 0
            ),
            "an event of A on B's bus",
        )
        for _ in range(25):  # the example policy's bulk_destructive limit is 20 in 10 min
            delete(next(records))
        until(
            lambda: (
                {"bulk_destructive", "approaching_limit"}
                <= {x["kind"] for x in alerts_in(sinks["a"])}
            ),
            "the alerts of the bulk delete",
        )
        raised = alerts_in(sinks["a"])
        assert [x["kind"] for x in raised].count("bulk_destructive") == 1  # repeats absorbed
        assert all(x["subject"] == subject for x in raised)
        assert metric(a, "piigate_alerts_total", kind="bulk_destructive") == 1
        assert alerts_in(sinks["b"]) == []  # B saw the events and raised none of their alerts
        assert metric(b, "piigate_alerts_total", kind="bulk_destructive") == 0
        heard = metric(b, "piigate_event_fanout_total", result="received")
        assert heard >= 26
        assert metric(a, "piigate_event_fanout_total", result="received") == 0  # no echoes
