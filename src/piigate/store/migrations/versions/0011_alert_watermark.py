"""The alert desk's watermark: how far the audit trail has been examined for alerts, so that a
node's start (or the next catch-up after a store failure) raises what no watcher raised.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from tables.py (see 0001_initial).
TS = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # No row yet: the first catch-up of an upgraded deployment examines the newest events only
    # (audit/catchup.py, CATCH_UP_BOUND), and creates the row.
    op.create_table(
        "alert_watermark",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("seq", SEQ, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_watermark"),
    )


def downgrade() -> None:
    op.drop_table("alert_watermark")
