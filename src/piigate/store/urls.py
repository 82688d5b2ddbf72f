"""Store URLs for the edges' one-line messages: checking one before anything is opened, showing
one without its password, and saying why the store behind one could not be reached."""

from __future__ import annotations

from sqlalchemy import exc, make_url
from sqlalchemy.exc import ArgumentError

from piigate.store.db import normalize_url

__all__ = ["check_url", "display_url", "unavailable_reason"]

# SQLSTATE classes and codes (PostgreSQL appendix A) a failed connection reports, in words.
_SQLSTATES = {
    "3D000": "the database does not exist",
    "28": "the server refused the user or password",
    "08": "the connection failed",
    "57P03": "the server is starting up or shutting down",
    "53300": "the server has too many connections",
}


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
