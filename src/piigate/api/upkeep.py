"""A node's background upkeep: the policy kept current with its file, the keyring with the
store's keys, and rows that have outlived their use deleted. ``api.services`` runs them as tasks
for as long as the node runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from datetime import timedelta

import structlog

from piigate.api.metrics import Metrics
from piigate.audit.log import AuditLog
from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.errors import PolicyError, ServiceUnavailable
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.store import Store

__all__ = [
    "CEREMONY_RETENTION_SECONDS",
    "KEYS_REFRESH_SECONDS",
    "POLICY_POLL_SECONDS",
    "PURGE_SECONDS",
    "PolicyWatch",
    "Purge",
    "refresh_keys",
]

log = structlog.get_logger("piigate.service")

POLICY_POLL_SECONDS = 2.0
# How often expired rows are deleted, and how long ceremonies outlive their expiry.
PURGE_SECONDS = 600.0
CEREMONY_RETENTION_SECONDS = 24 * 3600
# How often the store's keys are read again, for rotations by other nodes that this one has not
# met a kid of yet, and for /readyz to tell keys that can no longer be opened.
KEYS_REFRESH_SECONDS = 30.0


class PolicyWatch:
    """Reloads the policy when asked (SIGHUP) or when its file changes. A file that does not
    compile keeps the policy in force (CONTRACT §2); either way the outcome is audited.
    ``followers`` get each policy that comes into force (forward-auth reads its routes again
    against it)."""

    def __init__(
        self,
        policy: PolicyHolder,
        *,
        audit: AuditLog,
        metrics: Metrics,
        poll_seconds: float = POLICY_POLL_SECONDS,
        followers: Sequence[Callable[[CompiledPolicy], None]] = (),
    ) -> None:
        self.policy = policy
        self.followers = tuple(followers)
        self.audit = audit
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self._requested = asyncio.Event()

    def request(self) -> None:
        """Reload now rather than at the next poll."""
        self._requested.set()

    async def reload(self) -> bool:
        """Reload from the file: True when the new policy is in force."""
        try:
            compiled = self.policy.reload()
        except PolicyError as exc:
            self.metrics.policy_reload_failures.inc()
            log.warning("policy_reload_failed", errors=exc.errors[:5], kept=self._digest())
            await self.audit.record(
                "policy_rejected", data={"errors": exc.errors[:20], "kept": self._digest()}
            )
            return False
        self.metrics.policy_loaded.set(1)
        for follow in self.followers:
            follow(compiled)
        log.info("policy_reloaded", policy=compiled.digest, rules=len(compiled.policy.rules))
        await self.audit.record(
            "policy_loaded", data={"policy": compiled.digest, "rules": len(compiled.policy.rules)}
        )
        return True

    async def run(self) -> None:
        """Poll the file's modification time and size; reload on a change or a request."""
        path = self.policy.path
        assert path is not None
        last = _stamp(path)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requested.wait(), self.poll_seconds)
            forced = self._requested.is_set()
            self._requested.clear()
            stamp = _stamp(path)
            if forced or stamp != last:
                last = stamp
                try:
                    await self.reload()
                except ServiceUnavailable:
                    log.warning("policy_reload_not_audited")

    def _digest(self) -> str | None:
        current = self.policy.current
        return current.digest if current else None


class Purge:
    """Deletes what has outlived its use. Every node may run it; it only deletes rows that no
    check reads any more."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def once(self) -> dict[str, int]:
        """Ended counter windows, expired sessions and used grants, ceremonies a day after
        they expired, and risk history past its days: how many rows of each went."""
        now = self.clock.now()
        return {
            "counters": await self.store.purge_counters(now),
            "sessions": await self.store.purge_sessions(now),
            "used_grants": await self.store.purge_used_grants(now),
            "ceremonies": await self.store.purge_ceremonies(
                expired_before=now - timedelta(seconds=CEREMONY_RETENTION_SECONDS)
            ),
            "risk_history": await self.store.purge_risk_history(now),
        }

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PURGE_SECONDS)
            try:
                purged = await self.once()
            except ServiceUnavailable:
                log.warning("purge_failed")
                continue
            if any(purged.values()):
                log.info("purged", **purged)


async def refresh_keys(keyring: Keyring, *, every: float = KEYS_REFRESH_SECONDS) -> None:
    while True:
        await asyncio.sleep(every)
        await keyring.refresh()  # never raises: a failure is logged, or kept for /readyz


def _stamp(path: str) -> tuple[float, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size)
