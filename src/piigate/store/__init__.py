"""The store port: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL.

``Store(db)`` gathers every repository; each is also usable alone (``SqlCounters(db)``).
Rows come back as frozen dataclasses, times as aware UTC datetimes.
"""

from __future__ import annotations

from piigate.store.api_keys import ApiKeyRow, ApiKeyStore
from piigate.store.ceremonies import CeremonyRow, CeremonyStore
from piigate.store.challenges import ChallengeRow, ChallengeStore
from piigate.store.counters import SqlCounters
from piigate.store.db import AlreadyExists, Database, StoreUnavailable
from piigate.store.factors import FactorRow, FactorStore
from piigate.store.grants import GrantStore
from piigate.store.keyring import KeyringStore
from piigate.store.risk_history import RiskHistoryRows
from piigate.store.sessions import SessionRow, SessionStore
from piigate.store.urls import default_url
from piigate.store.users import UserRow, UserStore
from piigate.store.verification import VerificationStore

__all__ = [
    "AlreadyExists",
    "ApiKeyRow",
    "ApiKeyStore",
    "CeremonyRow",
    "CeremonyStore",
    "ChallengeRow",
    "ChallengeStore",
    "Database",
    "FactorRow",
    "FactorStore",
    "GrantStore",
    "KeyringStore",
    "RiskHistoryRows",
    "SessionRow",
    "SessionStore",
    "SqlCounters",
    "Store",
    "StoreUnavailable",
    "UserRow",
    "UserStore",
    "VerificationStore",
    "default_url",
]


class Store(
    ChallengeStore,
    CeremonyStore,
    GrantStore,
    UserStore,
    SessionStore,
    ApiKeyStore,
    FactorStore,
    VerificationStore,
    KeyringStore,
    RiskHistoryRows,
    SqlCounters,
):
    """Every repository over one :class:`Database`, as flat methods."""
