"""The risk engine's history: each subject's verified activity, last place, and the population.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from tables.py (see 0001_initial).
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "risk_history",
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("feature", sa.String(32), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "feature", "value", name="pk_risk_history"),
    )
    op.create_table(
        "risk_places",
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("radius_km", sa.Float(), nullable=True),
        sa.Column("country", sa.String(8), nullable=True),
        sa.PrimaryKeyConstraint("subject_id", name="pk_risk_places"),
    )
    op.create_table(
        "risk_population",
        sa.Column("feature", sa.String(32), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("feature", "value", name="pk_risk_population"),
    )


def downgrade() -> None:
    op.drop_table("risk_population")
    op.drop_table("risk_places")
    op.drop_table("risk_history")
