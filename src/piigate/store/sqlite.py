"""SQLite connections as the store needs them: WAL, a busy timeout, and BEGIN under our control.

SQLAlchemy's documented recipe for the SQLite drivers: stop ``sqlite3`` from issuing its own
(deferred, sometimes missing) BEGIN and emit BEGIN ourselves, so transactions mean what they
say and a writer can ask, through execution options, for ``BEGIN IMMEDIATE`` (the write lock
before the first read) and a durable commit (``synchronous=FULL``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["DURABLE", "IMMEDIATE", "begin", "install_sqlite_hooks"]

# Execution options read by the ``begin`` hook: BEGIN IMMEDIATE, and synchronous=FULL.
IMMEDIATE = "piigate_sqlite_immediate"
DURABLE = "piigate_sqlite_durable"


def install_sqlite_hooks(engine: Engine) -> None:
    """Set up every new connection of ``engine`` and take over its BEGIN."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so switching to WAL waits for a concurrent opener.
            cursor.execute("PRAGMA busy_timeout = 5000")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        begin(
            conn.connection.dbapi_connection,
            conn.connection.info,
            immediate=bool(options.get(IMMEDIATE)),
            durable=bool(options.get(DURABLE)),
        )


def begin(dbapi_connection: Any, info: dict[str, Any], *, immediate: bool, durable: bool) -> None:
    """BEGIN (``immediate``: BEGIN IMMEDIATE) on a connection set up by the ``connect`` hook,
    with ``synchronous=FULL`` when ``durable``; ``info`` is the pooled connection's, where its
    current ``synchronous`` setting is remembered."""
    # synchronous cannot change inside a transaction, so set it just before BEGIN; the
    # pooled connection remembers its current setting to avoid needless PRAGMAs.
    wanted = "FULL" if durable else "NORMAL"
    # Straight to the driver's cursor: these run once per transaction, and SQLAlchemy's
    # statement machinery (events, result set-up) would double what BEGIN costs.
    cursor = dbapi_connection.cursor()
    try:
        if info.get("synchronous", "NORMAL") != wanted:
            cursor.execute(f"PRAGMA synchronous = {wanted}")
            info["synchronous"] = wanted
        cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    # WAL is a property of the file, so this only does work for a brand-new database. Switching
    # needs an exclusive lock, and SQLite answers "database is locked" at once (no busy
    # handler) while another connection is switching it too: retry briefly. The sleep blocks
    # the event loop, but only for the first connections of a new file.
    deadline = time.monotonic() + 5
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
