"""The initial schema: audit chain, challenges, used grants, users, sessions, API keys, counters.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from tables.py: a migration must keep creating what it
# created on the day it was written, whatever the models look like later.
TS = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GENESIS = "0" * 64


# One statement per table of the first schema, in order: long by nature, and frozen once released
# (later changes are new migrations), so it is not split.
def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", SEQ, nullable=False, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_type", "audit_events", ["type"])
    op.create_index("ix_audit_events_subject_id", "audit_events", ["subject_id"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("seq", SEQ, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    # The chain starts empty: head at seq 0 with the genesis hash. Appends only ever UPDATE it.
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": GENESIS}])

    op.create_table(
        "challenges",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", TS, nullable=True),
        sa.Column("decision_id", sa.String(64), nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_challenges"),
    )
    op.create_index("ix_challenges_subject_id", "challenges", ["subject_id"])

    op.create_table(
        "used_grants",
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("used_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("grant_id", name="pk_used_grants"),
    )
    op.create_index("ix_used_grants_expires_at", "used_grants", ["expires_at"])

    op.create_table(
        "users",
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_users"),
    )

    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("level", sa.String(64), nullable=True),
        sa.Column("auth_time", TS, nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_sessions"),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )

    op.create_table(
        "counters",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("window_end", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_counters"),
    )


def downgrade() -> None:
    for table in ("counters", "api_keys", "sessions", "users", "used_grants", "challenges"):
        op.drop_table(table)
    op.drop_table("audit_head")
    op.drop_table("audit_events")
