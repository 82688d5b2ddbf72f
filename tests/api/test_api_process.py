"""``piigate serve`` as a real process under load, killed with SIGKILL: no acknowledged decision
is missing from the audit trail, and ``piigate audit verify`` still finds the chain intact."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from api_support import bearer, decision_body

from loopback_support import free_port
from piigate.audit.log import AuditLog
from piigate.clock import SystemClock
from piigate.store.db import Database
from serve_support import PIIGATE, serving

pytestmark = pytest.mark.slow

WORKERS = 8
LOAD_SECONDS = 2.0  # at least this long under load before the kill
ENOUGH_LOAD = 100  # and at least this many acknowledged decisions (a busy machine is slow)


def piigate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIIGATE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PIIGATE_DATA_DIR": str(tmp_path / "data"),
        "PIIGATE_DATABASE_URL": database_url,
        "PIIGATE_LOG_FORMAT": "json",
    }


def child_pids(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def running(pid: int) -> bool:
    """Not exited (a zombie waiting for whoever reaps orphans has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


class Progress:
    """The decisions acknowledged by all the load's clients so far; ``enough`` is set at
    ``ENOUGH_LOAD`` of them."""

    def __init__(self) -> None:
        self.count = 0
        self.enough = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        if self.count >= ENOUGH_LOAD:
            self.enough.set()


async def load(
    base: str, key: str, stop: asyncio.Event, progress: Progress
) -> tuple[list[str], int]:
    """One client posting decisions until ``stop`` or the server dies: (acked ids, errors)."""
    acknowledged: list[str] = []
    failures = 0
    kinds = [("read", ["phone"]), ("update", ["ssn"]), ("read", ["ssn"]), ("delete", ["ssn"])]
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        i = 0
        while not stop.is_set():
            action, pii = kinds[i % len(kinds)]
            i += 1
            try:
                response = await client.post(
                    "/v1/decisions", json=decision_body(action, pii), headers=bearer(key)
                )
            except httpx.HTTPError:
                failures += 1
                if failures > 3:
                    break
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 200:
                acknowledged.append(response.json()["decision_id"])
                progress.add()
    return acknowledged, failures


async def audited_decisions(database_url: str) -> set[str]:
    db = Database.open(database_url)
    try:
        audit = AuditLog(db, SystemClock())
        found: set[str] = set()
        after = 0
        while events := await audit.list_events(after=after, types=["decision"], limit=1000):
            found.update(str(e.data["decision_id"]) for e in events)
            assert events[-1].seq is not None
            after = events[-1].seq
        return found
    finally:
        await db.close()


async def test_sigkill_under_load_loses_no_acknowledged_decision(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    created = piigate(env, "keys", "create", "load", "--scope", "decisions")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("pgk_")

    port = free_port()
    with serving(env, port, tmp_path / "serve.log") as proc:
        stop = asyncio.Event()
        progress = Progress()
        workers = [
            asyncio.create_task(load(f"http://127.0.0.1:{port}", key, stop, progress))
            for _ in range(WORKERS)
        ]
        await asyncio.sleep(LOAD_SECONDS)
        with contextlib.suppress(TimeoutError):  # then the count below says how little it was
            await asyncio.wait_for(progress.enough.wait(), 60)
        children = child_pids(proc.pid)
        assert len(children) == 1, children  # the audit writer process, on either store
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests are in flight
        await asyncio.to_thread(proc.wait, 10)
        # Its input closed, the writer finishes the batch it holds and exits: never an orphan.
        deadline = time.monotonic() + 15
        while any(running(pid) for pid in children):
            assert time.monotonic() < deadline, "the audit writer outlived its server"
            await asyncio.sleep(0.05)
        async with asyncio.timeout(15):
            results = await asyncio.gather(*workers)
        stop.set()
        assert proc.returncode == -signal.SIGKILL

    acknowledged = [decision_id for ids, _ in results for decision_id in ids]
    too_little = f"too little load to mean anything: {len(acknowledged)}"
    assert len(acknowledged) >= ENOUGH_LOAD, too_little
    assert all(failures > 0 for _, failures in results), "the kill did not hit the load"

    verified = piigate(env, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ok ")
    count = int(verified.stdout.split()[1])
    assert count >= len(acknowledged) + 2
    assert "Traceback" not in verified.stderr

    missing = set(acknowledged) - await audited_decisions(database_url)
    assert not missing, f"{len(missing)} acknowledged decisions are not in the audit log"

    # The store is usable again: a restarted service comes up on it and keeps the chain going.
    with serving(env, free_port(), tmp_path / "serve2.log"):
        pass
    again = piigate(env, "audit", "verify")
    assert again.returncode == 0, again.stderr
    assert int(again.stdout.split()[1]) > count
