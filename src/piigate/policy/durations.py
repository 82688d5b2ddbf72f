"""Durations in policy files: plain seconds or ``30s`` / ``5m`` / ``12h`` / ``1d``."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"(\d+)([smhd])")


def parse_duration(value: object) -> int:
    """Seconds for ``value``; raises ValueError with a message fit for a policy author."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like 30s, 5m, 12h")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        match = _PATTERN.fullmatch(text)
        if match:
            return int(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"bad duration {value!r}: use seconds or a string like 30s, 5m, 12h, 1d")


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
