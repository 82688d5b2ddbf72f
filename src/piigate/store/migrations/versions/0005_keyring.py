"""The deployment's keyring in the store, each key sealed by the master key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from tables.py (see 0001_initial).
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A node's file keyring (DATA_DIR/keyring/keyring.json) moves in at its next start, once it
    # has the master key: a migration knows neither.
    op.create_table(
        "keyring_keys",
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_keyring_keys"),
    )
    op.create_index("ux_keyring_keys_kid", "keyring_keys", ["kid"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_keyring_keys_kid", table_name="keyring_keys")
    op.drop_table("keyring_keys")
