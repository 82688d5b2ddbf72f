"""PostgreSQL: ``piigate_count``, a group of counter hits and reads in one statement.

``SqlCounters`` counts what concurrent requests ask for as one group a transaction. On
PostgreSQL, a statement per key would cost a round trip each while the transaction holds the
rows counted; this function runs the same upsert (or read) per key inside the server, in the
order given, and returns the counts. SQLite runs in process and keeps a statement per key.

Per key: its caller's ``now``; the window in seconds a hit opens (0 for a read); the 1-based
position of the key whose count of 1 lets this hit count (0: none; ``ports.Hit.if_first``);
what a hit adds.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CREATE = """
CREATE OR REPLACE FUNCTION piigate_count(
    keys text[], nows timestamptz[], windows double precision[], gates integer[],
    amounts integer[]
) RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    counts integer[] := '{}';
    counted integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        counted := NULL;
        IF windows[i] > 0 AND (gates[i] = 0 OR counts[gates[i]] = 1) THEN
            INSERT INTO counters AS c (key, value, window_end)
            VALUES (keys[i], amounts[i], nows[i] + make_interval(secs => windows[i]))
            ON CONFLICT (key) DO UPDATE SET
                value = CASE WHEN c.window_end <= nows[i] THEN amounts[i]
                             ELSE c.value + amounts[i] END,
                window_end = CASE WHEN c.window_end <= nows[i]
                                  THEN nows[i] + make_interval(secs => windows[i])
                                  ELSE c.window_end END
            RETURNING c.value INTO counted;
        ELSE
            SELECT c.value INTO counted FROM counters AS c
            WHERE c.key = keys[i] AND c.window_end > nows[i];
        END IF;
        counts[i] := coalesce(counted, 0);
    END LOOP;
    RETURN counts;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS piigate_count(text[], timestamptz[], double precision[], "
            "integer[], integer[])"
        )
