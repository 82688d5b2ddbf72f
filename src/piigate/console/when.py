"""Instants as the security team's pages show them: UTC to the second, and how long ago."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["ago", "utc_text"]


def utc_text(at: datetime) -> str:
    """``2026-05-04 10:00:00 UTC`` (a naive instant is taken to be UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(at: datetime, now: datetime) -> str:
    """How long before ``now`` ``at`` was, in its largest whole unit: ``just now``,
    ``40 s ago``, ``3 min ago``, ``2 h ago``, ``5 d ago``; ``in 4 min`` for a later instant."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    seconds = int((now - at).total_seconds())
    later = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            amount = f"{seconds // size} {unit}"
            return f"in {amount}" if later else f"{amount} ago"
    raise AssertionError("unreachable")  # pragma: no cover - seconds >= 1 here
