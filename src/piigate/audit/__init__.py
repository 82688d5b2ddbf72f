"""The audit trail: a hash chain of events, group-committed to the store, fanned out live."""

from __future__ import annotations

from piigate.audit.bus import EventBus, SubscriberLagged, Subscription, SubscriptionClosed
from piigate.audit.chain import (
    GENESIS,
    ChainHead,
    ChainReport,
    ChainRow,
    ChainVerifier,
    canonical_json,
    event_hash,
    verify_rows,
)
from piigate.audit.log import AuditLog, AuditStats

__all__ = [
    "GENESIS",
    "AuditLog",
    "AuditStats",
    "ChainHead",
    "ChainReport",
    "ChainRow",
    "ChainVerifier",
    "EventBus",
    "SubscriberLagged",
    "Subscription",
    "SubscriptionClosed",
    "canonical_json",
    "event_hash",
    "verify_rows",
]
