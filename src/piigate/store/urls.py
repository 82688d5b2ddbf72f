"""Checking a store URL before anything is opened, so an edge can refuse a bad one in one line."""

from __future__ import annotations

from sqlalchemy.exc import ArgumentError

from piigate.store.db import normalize_url

__all__ = ["check_url"]


def check_url(url: str) -> None:
    """Raise ``ValueError`` with a one-line reason when ``url`` names no store piigate can open:
    unparsable, an unsupported scheme, or an in-memory SQLite database."""
    try:
        normalize_url(url)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None
