"""Alembic environment for piigate's store.

``Database.upgrade()`` passes an open connection, already inside the locked transaction, through
``config.attributes["connection"]``. Without one (the ``alembic`` CLI), the URL comes from the
``sqlalchemy.url`` option or ``PIIGATE_DATABASE_URL`` and a fresh async engine is used.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from piigate.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine(url: str) -> None:
    from piigate.store.db import Database

    db = Database.open(url)
    try:
        async with db.begin(immediate=True) as conn:
            await conn.run_sync(_run)
    finally:
        await db.close()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("PIIGATE_DATABASE_URL")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or PIIGATE_DATABASE_URL")
    asyncio.run(_run_with_new_engine(url))


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
