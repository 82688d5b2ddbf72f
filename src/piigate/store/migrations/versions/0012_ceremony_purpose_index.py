"""An index on the ceremonies' purpose and opening time: the recorded risk signals (denied push
approvals, reported activity) read the recent ceremonies of a purpose at every refresh, which
without it scans the whole table.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ceremonies_purpose_created_at", "ceremonies", ["purpose", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ceremonies_purpose_created_at", table_name="ceremonies")
