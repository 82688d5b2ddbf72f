"""The risk engine of one node, wired from its parts (``Services.start`` calls this).

- Geolocation: the databases of ``service.risk`` (``risk/geo.py``), which ``Services.start``
  opens before anything else, so that an unreadable one stops the start with one line.
- History: the store (``store/risk_history.py``), shared by every node.
- Counters: those the node already shares (Redis when ``PIIGATE_REDIS_URL`` is set, else the SQL
  store) -- except on SQLite, the embedded single-node store, where the behaviour counters stay
  in this process's memory rather than cost a database write on every decision.
- The risk key: one for the deployment, in the store (``risk/keys.py``).
"""

from __future__ import annotations

from typing import Protocol

from piigate.audit.log import AuditLog
from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.policy.holder import PolicyHolder
from piigate.ports import RateCounters
from piigate.risk.behaviour import Behaviour
from piigate.risk.clients import ClientParser
from piigate.risk.engine import ContextRisk
from piigate.risk.geo import GeoLocator
from piigate.risk.keys import load_risk_key
from piigate.risk.observer import ContextObserver
from piigate.store import Store
from piigate.store.memory_counters import MemoryCounters
from piigate.store.redis_counters import RedisCounters
from piigate.store.risk_history import SqlHistoryStore

__all__ = ["open_context_risk", "risk_counters"]


class Node(Protocol):
    """The parts of ``api.services.Services`` the risk engine is made of."""

    @property
    def geo(self) -> GeoLocator: ...
    @property
    def store(self) -> Store: ...
    @property
    def keyring(self) -> Keyring: ...
    @property
    def redis_counters(self) -> RedisCounters | None: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def policy(self) -> PolicyHolder: ...
    @property
    def clock(self) -> Clock: ...


def risk_counters(node: Node) -> RateCounters:
    """The behaviour signals' counters: Redis, memory on SQLite, else the SQL store's."""
    if node.redis_counters is not None:
        return node.redis_counters
    if node.store.db.dialect == "sqlite":
        return MemoryCounters()
    return node.store


async def open_context_risk(node: Node) -> ContextRisk:
    key = await load_risk_key(node.store, node.keyring, now=node.clock.now())
    return ContextRisk(
        observer=ContextObserver(geo=node.geo, clients=ClientParser(), key=key),
        history=SqlHistoryStore(node.store),
        behaviour=Behaviour(risk_counters(node), node.audit, key=key),
        policy=node.policy,
    )
