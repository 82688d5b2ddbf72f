"""Store URLs: the drivers a URL is opened with (async for the engine, synchronous for the
units of work), the default store's, and for the edges' one-line messages: checking one before
anything is opened, showing one without its password, and saying why the store behind one could
not be reached."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import exc, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

__all__ = [
    "blocking_url",
    "check_url",
    "default_url",
    "display_url",
    "normalize_url",
    "sqlite_path",
    "unavailable_reason",
]

# SQLSTATE classes and codes (PostgreSQL appendix A) a failed connection reports, in words.
_SQLSTATES = {
    "3D000": "the database does not exist",
    "28": "the server refused the user or password",
    "08": "the connection failed",
    "57P03": "the server is starting up or shutting down",
    "53300": "the server has too many connections",
}


def default_url(data_dir: Path) -> str:
    """The embedded default store: ``sqlite:///<data_dir>/piigate.db``."""
    return f"sqlite:///{Path(data_dir) / 'piigate.db'}"


def normalize_url(url: str | URL) -> URL:
    """Map ``sqlite://`` and ``postgresql://`` (any driver) onto the async drivers we ship."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            raise ValueError("in-memory SQLite is not supported: give the store a file path")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for another backend or a ``file:`` URI."""
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return None
    return Path(url.database or "").expanduser().resolve()


def blocking_url(url: URL) -> URL:
    """The synchronous driver's URL for an async one: ``sqlite3`` for aiosqlite, psycopg for
    asyncpg (whose ``ssl=`` option is libpq's ``sslmode=``)."""
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+pysqlite")
    query = dict(url.query)
    if "ssl" in query and "sslmode" not in query:
        query["sslmode"] = query.pop("ssl")
    return url.set(drivername="postgresql+psycopg", query=query)


def check_url(url: str) -> None:
    """Raise ``ValueError`` with a one-line reason when ``url`` names no store piigate can open:
    unparsable, an unsupported scheme, or an in-memory SQLite database."""
    try:
        normalize_url(url)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None


def display_url(url: str) -> str:
    """``url`` to show: its password is ``***``, and a ``password`` query parameter is left
    out."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(an unparsable URL)"
    return parsed.difference_update_query(["password"]).render_as_string(hide_password=True)


def unavailable_reason(error: BaseException) -> str | None:
    """Why ``error`` (a ``StoreUnavailable``) happened, in a few words: the SQLSTATE's meaning or
    the connection error's class, never the driver's message (it may quote values)."""
    cause = error.__cause__
    if isinstance(cause, exc.DBAPIError):
        state = getattr(cause.orig, "sqlstate", None) or getattr(cause.orig, "pgcode", None)
        if isinstance(state, str) and state:
            known = _SQLSTATES.get(state) or _SQLSTATES.get(state[:2])
            return known or f"SQLSTATE {state}"
        return type(cause.orig).__name__ if cause.orig is not None else None
    if isinstance(cause, OSError):
        return f"cannot connect ({type(cause).__name__})"
    return None
