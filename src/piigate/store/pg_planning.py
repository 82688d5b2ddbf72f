"""The PostgreSQL gateway's own connections to the application's database.

It lives in store/ because only store/ speaks SQL (tests/test_layering.py); it is not piigate's
own store. A small pool of the gateway's role, used for five things: the function names only
``pg_catalog`` defines, the OIDs and column numbers of the catalogued tables (the origin of a
result column in ``RowDescription``), ``EXPLAIN (VERBOSE, FORMAT JSON)`` of statements the
parser could not resolve, the tables a relation in such a plan is a partition of or inherits
from, and whether changing a table's rows runs a user's code that no plan shows (a trigger).
``EXPLAIN`` without ``ANALYZE`` runs nothing; it is planned in a read-only transaction with the
client's search path set for that transaction only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import asyncpg

__all__ = ["PlanConnections"]

_OIDS: Final = """
SELECT c.oid::int8, a.attnum::int4, n.nspname, c.relname, a.attname
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


_MATVIEWS: Final = """
SELECT n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid),
       array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
GROUP BY 1, 2, 3
"""


# Every ancestor (pg_inherits, transitively: a partition's parents, an inheriting table's) of
# the (schema, relation)s given.
_ANCESTORS: Final = """
WITH RECURSIVE up(child, parent) AS (
    SELECT c.oid, i.inhparent
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
    WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  UNION
    SELECT up.child, i.inhparent
    FROM up JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.parent
)
SELECT cn.nspname, cc.relname, pn.nspname, pc.relname
FROM up
JOIN pg_catalog.pg_class cc ON cc.oid = up.child
JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace
JOIN pg_catalog.pg_class pc ON pc.oid = up.parent
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
"""


# Whether a change to the (schema, relation)s given runs code of the database's users that no
# plan shows: a trigger, or a function outside pg_catalog in a generated column's expression
# or a CHECK constraint; on those tables, on their partitions and children, or on the tables
# their rows cascade to (foreign keys ON DELETE/UPDATE CASCADE, SET NULL, SET DEFAULT).
_TRIGGERED: Final = """
WITH RECURSIVE edge(parent, child) AS (
    SELECT confrelid, conrelid FROM pg_catalog.pg_constraint
    WHERE contype = 'f' AND (confdeltype IN ('c', 'n', 'd') OR confupdtype IN ('c', 'n', 'd'))
  UNION ALL
    SELECT inhparent, inhrelid FROM pg_catalog.pg_inherits
), hit(oid) AS (
    SELECT c.oid
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  UNION
    SELECT edge.child FROM edge JOIN hit ON edge.parent = hit.oid
)
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_trigger t JOIN hit ON t.tgrelid = hit.oid
    WHERE NOT t.tgisinternal
) OR EXISTS (
    SELECT 1
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_proc f ON d.refclassid = 'pg_catalog.pg_proc'::regclass
        AND f.oid = d.refobjid AND f.pronamespace <> 'pg_catalog'::regnamespace
    WHERE (d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid IN (
            SELECT ad.oid FROM pg_catalog.pg_attrdef ad
            JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
            JOIN hit ON hit.oid = ad.adrelid
            WHERE a.attgenerated <> ''))
       OR (d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid IN (
            SELECT c.oid FROM pg_catalog.pg_constraint c JOIN hit ON hit.oid = c.conrelid
            WHERE c.contype = 'c'))
)
"""


class PlanConnections:
    def __init__(self) -> None:
        self.pool: Any = None

    async def start(
        self, *, host: str, port: int, user: str, password: str | None, database: str
    ) -> None:
        self.pool = await asyncpg.create_pool(
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            min_size=1,
            max_size=4,
            statement_cache_size=0,
        )

    async def names(self, query: str) -> frozenset[str]:
        """The first column of ``query``'s rows (``plan.BUILTINS_QUERY``)."""
        rows = await self.pool.fetch(query)
        return frozenset(str(row[0]) for row in rows)

    async def columns(
        self, tables: Iterable[tuple[str, str]]
    ) -> list[tuple[int, int, str, str, str]]:
        """``(table oid, column number, schema, table, column)`` of the ``(schema, table)``s."""
        wanted = list(tables)
        if not wanted:
            return []
        rows = await self.pool.fetch(_OIDS, [s for s, _ in wanted], [t for _, t in wanted])
        return [(int(o), int(n), str(s), str(t), str(c)) for o, n, s, t, c in rows]

    async def ancestors(self, tables: Iterable[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
        """``(schema, table, ancestor's schema, ancestor)`` for every ancestor of each of the
        ``(schema, table)``s: the tables they are partitions of, or inherit from."""
        wanted = list(tables)
        if not wanted:
            return []
        rows = await self.pool.fetch(_ANCESTORS, [s for s, _ in wanted], [t for _, t in wanted])
        return [(str(s), str(t), str(ps), str(pt)) for s, t, ps, pt in rows]

    async def triggered(self, tables: Iterable[tuple[str, str]]) -> bool:
        """Whether changing rows of the ``(schema, table)``s runs a user's code that no plan
        shows: a trigger, or a user function in a generated column or a CHECK constraint (on
        them, their partitions or children, or the tables their rows cascade to)."""
        wanted = list(tables)
        if not wanted:
            return False
        found = await self.pool.fetchval(_TRIGGERED, [s for s, _ in wanted], [t for _, t in wanted])
        return bool(found)

    async def materialized_views(self) -> list[tuple[str, str, str, list[str]]]:
        """``(schema, name, defining query, column names)`` of every materialized view."""
        for attempt in range(3):
            try:
                rows = await self.pool.fetch(_MATVIEWS)
                break
            except asyncpg.PostgresError:
                # A view dropped while its definition is read ("could not open relation"):
                # the catalog moved under the query; read it again.
                if attempt == 2:
                    raise
        return [(str(s), str(n), str(q), [str(c) for c in cols]) for s, n, q, cols in rows]

    async def explain(self, sql: str, search_path: str | None) -> str:
        """The JSON text of ``EXPLAIN (VERBOSE, FORMAT JSON) sql``, every parameter NULL."""
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            if search_path:
                await conn.execute(
                    "SELECT pg_catalog.set_config('search_path', $1, true)", search_path
                )
            statement = await conn.prepare("EXPLAIN (VERBOSE, FORMAT JSON) " + sql)
            count = len(statement.get_parameters())
            value = await statement.fetchval(*([None] * count))
        return value if isinstance(value, str) else str(value)

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.close()
