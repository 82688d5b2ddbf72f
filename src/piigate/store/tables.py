"""The schema, as SQLAlchemy Core tables. Alembic migrations under ``migrations/`` create it.

Times are stored as timezone-aware UTC timestamps; JSON columns hold only ids, names and
settings, never PII values (phone numbers and factor secrets are stored encrypted).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "UtcDateTime",
    "alert_watermark",
    "alerts",
    "api_keys",
    "audit_events",
    "audit_head",
    "ceremonies",
    "challenges",
    "counters",
    "factors",
    "keyring_keys",
    "metadata",
    "risk_history",
    "risk_places",
    "risk_population",
    "sessions",
    "used_grants",
    "users",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always binds and returns aware UTC datetimes.

    SQLite has no time zone type: SQLAlchemy stores the wall-clock digits and drops the offset,
    so a value in another zone would be stored shifted and read back naive. Converting to UTC on
    the way in (naive values are taken to be UTC) and tagging UTC on the way out makes both
    backends agree, and keeps SQLite's text timestamps comparable with ``<``/``>``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


TS = UtcDateTime()
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
SEQ = BigInteger().with_variant(Integer(), "sqlite")

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("at", TS, nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject_id", String(255), nullable=True),
    Column("data", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_type", "type"),
    # The console's windows over time (decisions of the last 24 hours, by type and time).
    Index("ix_audit_events_type_at", "type", "at"),
    # A subject's events newest first, a page at a time (SQLite's indexes end in the rowid,
    # the seq, anyway; PostgreSQL's need it spelled out to read them in order).
    Index("ix_audit_events_subject_seq", "subject_id", "seq"),
)

# The anchor of the audit chain: one row (id = 1) holding the last appended seq and hash. Every
# append transaction locks and updates it, so appends from many processes serialise on it, and
# a deleted tail of audit_events shows up as a head that points past the last row.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", SEQ, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Alerts raised from audit events (``audit/alerts.py``): one per source event, whichever node
# raised it first (``event_seq`` is unique); open until acknowledged.
alerts = Table(
    "alerts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("subject_id", String(255), nullable=True),
    Column("at", TS, nullable=False),
    Column("event_seq", SEQ, nullable=False, unique=True),
    Column("summary", String(255), nullable=False),
    Column("acknowledged_by", String(255), nullable=True),
    Column("acknowledged_at", TS, nullable=True),
    Index("ix_alerts_at", "at"),
    Index("ix_alerts_subject_id", "subject_id"),
)

# How far the audit trail has been examined for alerts (``audit/catchup.py``): every event of
# the alert desk's source types with ``seq`` at or below this one's has been examined (its alert
# raised, or found to raise none). One row (id = 1), created by the first catch-up; it only moves
# forward, and only over events a catch-up read from this table's store itself.
alert_watermark = Table(
    "alert_watermark",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", SEQ, nullable=False),
    Column("at", TS, nullable=False),
)

challenges = Table(
    "challenges",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("subject_id", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("last_attempt_at", TS, nullable=True),  # for back-off between attempts
    Column("decision_id", String(64), nullable=True),
    Column("requested_by", String(255), nullable=True),
    Column("body", JSON, nullable=False),  # requirement, action, pii classes, resource, txn
    # How the challenge was approved (method, factor, level, amr, auth_time, approver): set with
    # the move to ``approved``; a grant is minted from it when it is collected.
    Column("approval", JSON, nullable=True),
    # When the grant of an out-of-band approval (push, another person) was handed out: once.
    Column("grant_collected_at", TS, nullable=True),
    Index("ix_challenges_subject_id", "subject_id"),
)

used_grants = Table(
    "used_grants",
    metadata,
    Column("grant_id", String(64), primary_key=True),
    Column("used_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Index("ix_used_grants_expires_at", "expires_at"),
)

users = Table(
    "users",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(255), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("level", String(64), nullable=True),
    Column("auth_time", TS, nullable=False),
    Column("amr", JSON, nullable=False),
    # A database credential's SCRAM-SHA-256 verifier (``SCRAM-SHA-256$…``), for the PostgreSQL
    # gateway; NULL for a console session.
    Column("scram_verifier", String(255), nullable=True),
    # A sign-in at the identity provider: its issuer and the roles it gave (NULL for a local
    # login, whose roles are the user's).
    Column("issuer", String(2048), nullable=True),
    Column("roles", JSON, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("key_hash", LargeBinary(32), nullable=False, unique=True),
    Column("roles", JSON, nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS, nullable=True),
)

# Fixed-window counters shared across nodes (login throttling, failure counts, rate limits).
counters = Table(
    "counters",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("value", Integer, nullable=False),
    Column("window_end", TS, nullable=False),
)

# Enrolled authenticators. ``secret`` holds whatever the caller gives it, which must already be a
# keyring ciphertext token (``Keyring.encrypt``, AAD naming the factor): the store never sees a
# plaintext secret and does no encryption itself. ``data`` holds kind-specific settings that are
# not secret (TOTP digits/period/algorithm, recovery code hashes).
factors = Table(
    "factors",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("subject_id", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("label", String(255), nullable=False, default=""),
    Column("state", String(16), nullable=False),  # pending | active | disabled
    Column("secret", Text, nullable=True),
    Column("last_step", BigInteger, nullable=True),  # TOTP: the last accepted time step
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed verifications
    Column("last_failure_at", TS, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("confirmed_at", TS, nullable=True),
    Column("data", JSON, nullable=False),
    # WebAuthn: the credential id (base64url), unique across every subject (WebAuthn §7.1
    # step 22: a credential registered to one user is refused for another).
    Column("credential_id", String(1400), nullable=True),
    Index("ix_factors_subject_id", "subject_id"),
    Index("ux_factors_credential_id", "credential_id", unique=True),
)

# Single-use ceremony state shared across nodes: a WebAuthn challenge, an SMS code sent, a push
# sent to a device, an enrollment token. ``secret`` is a keyring ciphertext or a hash, never a
# plaintext code; ``state`` moves from ``open`` exactly once (compare-and-set).
ceremonies = Table(
    "ceremonies",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("subject_id", String(255), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("challenge_id", String(64), nullable=True),
    Column("factor_id", String(64), nullable=True),
    Column("state", String(16), nullable=False),  # open | used | approved | denied | expired
    Column("secret", Text, nullable=True),
    Column("data", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("closed_at", TS, nullable=True),
    Index("ix_ceremonies_subject_id", "subject_id"),
    Index("ix_ceremonies_challenge_id", "challenge_id"),
    # The recorded risk signals read recent ceremonies of a purpose (``recent_ceremonies``).
    Index("ix_ceremonies_purpose_created_at", "purpose", "created_at"),
)

# The deployment's keyring (``crypto.keystore``): one row per signing or data key, each sealed by
# the master key (``kek_id`` names which), never in the clear. Rows are only ever added; the
# current key of a kind is the last ``active`` one added (highest ``seq``), and the older ones
# stay for what was signed or encrypted under them.
keyring_keys = Table(
    "keyring_keys",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kid", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # signing | data
    Column("created_at", TS, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("kek_id", String(64), nullable=False),
    Column("sealed", Text, nullable=False),
    Index("ux_keyring_keys_kid", "kid", unique=True),
)

# The risk engine's history of each subject's verified activity (``store/risk_history.py``):
# per subject, feature (``risk.observation.Feature``: device, ip, network, country, asn, client
# ...) and value, how often and when. Addresses, networks and devices are keyed hashes, never
# the values themselves. The feature ``activity`` counts verified activities per day (value
# ``YYYY-MM-DD``). Bounded per subject and feature (newest 100 values, 180 days).
risk_history = Table(
    "risk_history",
    metadata,
    Column("subject_id", String(255), primary_key=True),
    Column("feature", String(32), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("first_seen", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
)

# Where each subject's latest located verified activity was (impossible travel).
risk_places = Table(
    "risk_places",
    metadata,
    Column("subject_id", String(255), primary_key=True),
    Column("at", TS, nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    Column("radius_km", Float, nullable=True),
    Column("country", String(8), nullable=True),
)

# How often each value of the client and place features was seen over all subjects' verified
# activity (Freeman's population p(x)); the feature ``activity`` with value ``""`` counts every
# verified activity. Only ever counted up, as ``risk eval``'s in-memory history does.
risk_population = Table(
    "risk_population",
    metadata,
    Column("feature", String(32), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("count", BigInteger, nullable=False),
)
