"""Ceremonies (WebAuthn challenges, SMS codes, pushes, enrollment tokens) and challenge approvals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from tables.py (see 0001_initial).
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("challenges") as batch:
        batch.add_column(sa.Column("approval", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("grant_collected_at", TS, nullable=True))
    op.create_table(
        "ceremonies",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("challenge_id", sa.String(64), nullable=True),
        sa.Column("factor_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ceremonies"),
    )
    op.create_index("ix_ceremonies_subject_id", "ceremonies", ["subject_id"])
    op.create_index("ix_ceremonies_challenge_id", "ceremonies", ["challenge_id"])


def downgrade() -> None:
    op.drop_index("ix_ceremonies_challenge_id", table_name="ceremonies")
    op.drop_index("ix_ceremonies_subject_id", table_name="ceremonies")
    op.drop_table("ceremonies")
    with op.batch_alter_table("challenges") as batch:
        batch.drop_column("grant_collected_at")
        batch.drop_column("approval")
