"""Indexes for the console's reads of the audit trail: events of a type over a time window, and
a subject's events in seq order (replacing the index on the subject alone).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_events_type_at", "audit_events", ["type", "at"])
    op.create_index("ix_audit_events_subject_seq", "audit_events", ["subject_id", "seq"])
    op.drop_index("ix_audit_events_subject_id", table_name="audit_events")


def downgrade() -> None:
    op.create_index("ix_audit_events_subject_id", "audit_events", ["subject_id"])
    op.drop_index("ix_audit_events_subject_seq", table_name="audit_events")
    op.drop_index("ix_audit_events_type_at", table_name="audit_events")
