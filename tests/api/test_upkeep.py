"""A node's background upkeep (``api/upkeep.py``): the policy file watched (a change, or a
request as on SIGHUP, reloads it), and expired rows purged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog
from api_support import EXAMPLE_POLICY, Node

from piigate.api.upkeep import PolicyWatch
from piigate.audit.log import AuditLog
from piigate.policy.holder import PolicyHolder
from piigate.policy.yamlnodes import MAX_FILE_BYTES

PASSWORD = "correct horse battery staple"
EXTRA_RULE = """
  - name: read-phone
    when: {pii: [phone], action: [read]}
    require: {level: aal2, max_age: 10m}
"""


def _rules(policy: PolicyHolder) -> set[str]:
    current = policy.current
    return set() if current is None else {rule.name for rule in current.policy.rules}


@contextlib.asynccontextmanager
async def _watching(watch: PolicyWatch) -> AsyncIterator[None]:
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.01)  # it has taken the file's first stamp
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for the watch's task to show its effect (it offers no event to wait on)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _audited_loads(audit: AuditLog, count: int) -> None:
    """Wait until ``count`` reloads are audited: the watch records the event after it swaps the
    policy, and leaving ``_watching`` cancels it, so the swap alone is not the end of a reload."""
    async with asyncio.timeout(10):
        while len(await audit.list_events(types=["policy_loaded"])) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_changed_file_or_a_request_reloads_the_policy(node: Node, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    original = EXAMPLE_POLICY.read_text()
    policy_file.write_text(original)
    policy = PolicyHolder.from_file(str(policy_file))
    audit, metrics = node.services.audit, node.services.metrics

    polled = PolicyWatch(policy, audit=audit, metrics=metrics, poll_seconds=0.02)
    async with _watching(polled):
        changed = tmp_path / "changed.yaml"
        changed.write_text(original.replace("rules:", "rules:" + EXTRA_RULE, 1))
        changed.replace(policy_file)  # at once: the watch never sees half a file
        await _until(lambda: "read-phone" in _rules(policy))
        await _audited_loads(audit, 1)

    # Polled once an hour and the file unchanged: only the request (SIGHUP) explains a reload.
    requested = PolicyWatch(policy, audit=audit, metrics=metrics, poll_seconds=3600)
    async with _watching(requested):
        before = policy.current
        requested.request()
        await _until(lambda: policy.current is not before)
        await _audited_loads(audit, 2)
    loaded = await audit.list_events(types=["policy_loaded"])
    assert len(loaded) == 2


async def test_purge_deletes_expired_sessions_once(node: Node) -> None:
    await node.user("alice", PASSWORD)
    login = await node.client.post("/v1/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    assert (await node.services.purge.once())["sessions"] == 0
    node.clock.advance(node.settings.session_ttl + 1)
    assert (await node.services.purge.once())["sessions"] == 1
    assert (await node.services.purge.once())["sessions"] == 0


async def test_a_reload_of_a_file_over_the_size_limit_keeps_the_old_policy(
    node: Node, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    original = EXAMPLE_POLICY.read_bytes()
    policy_file.write_bytes(original)
    policy = PolicyHolder.from_file(str(policy_file))
    kept = policy.current
    assert kept is not None
    audit, metrics = node.services.audit, node.services.metrics
    watch = PolicyWatch(policy, audit=audit, metrics=metrics)

    # A valid policy with a new rule, which would be taken were it not for its size.
    changed = original.replace(b"rules:", b"rules:" + EXTRA_RULE.encode(), 1)
    policy_file.write_bytes(changed.ljust(MAX_FILE_BYTES + 1))
    size, limit = MAX_FILE_BYTES + 1, MAX_FILE_BYTES
    too_large = f"{policy_file}: too large ({size} bytes; the limit is {limit})"
    with structlog.testing.capture_logs() as logs:
        assert await watch.reload() is False
    assert policy.current is kept and "read-phone" not in _rules(policy)
    # The node's own background tasks (the alert desk's catch-ups) may log meanwhile.
    reloads = [e for e in logs if e["event"].startswith("policy_")]
    assert [(e["event"], e["errors"]) for e in reloads] == [("policy_reload_failed", [too_large])]
    (rejected,) = await audit.list_events(types=["policy_rejected"])
    assert rejected.data == {"errors": [too_large], "kept": kept.digest}

    policy_file.write_bytes(changed)  # back within the limit: taken
    assert await watch.reload() is True
    assert "read-phone" in _rules(policy)
