"""WebAuthn credential ids in a column of their own, unique across every subject.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from tables.py (see 0001_initial).
_factors = sa.table(
    "factors",
    sa.column("id", sa.String(64)),
    sa.column("kind", sa.String(32)),
    sa.column("data", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("credential_id", sa.String(1400)),
)


def upgrade() -> None:
    with op.batch_alter_table("factors") as batch:
        batch.add_column(sa.Column("credential_id", sa.String(1400), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_factors.c.id, _factors.c.data)
        .where(_factors.c.kind == "webauthn")
        .order_by(_factors.c.created_at, _factors.c.id)
    ).all()
    seen: set[str] = set()
    for factor_id, data in rows:
        credential_id = (data or {}).get("credential_id")
        # The oldest registration keeps a credential registered twice; a later duplicate keeps
        # working for its subject but no longer blocks anything.
        if not isinstance(credential_id, str) or credential_id in seen:
            continue
        seen.add(credential_id)
        bind.execute(
            sa.update(_factors)
            .where(_factors.c.id == factor_id)
            .values(credential_id=credential_id)
        )
    op.create_index("ux_factors_credential_id", "factors", ["credential_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_factors_credential_id", table_name="factors")
    with op.batch_alter_table("factors") as batch:
        batch.drop_column("credential_id")
