"""Alerts raised from audit events, one per source event, acknowledged by the security team.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from tables.py (see 0001_initial).
TS = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("event_seq", SEQ, nullable=False),
        sa.Column("summary", sa.String(255), nullable=False),
        sa.Column("acknowledged_by", sa.String(255), nullable=True),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("event_seq", name="uq_alerts_event_seq"),
    )
    op.create_index("ix_alerts_at", "alerts", ["at"])
    op.create_index("ix_alerts_subject_id", "alerts", ["subject_id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_subject_id", table_name="alerts")
    op.drop_index("ix_alerts_at", table_name="alerts")
    op.drop_table("alerts")
