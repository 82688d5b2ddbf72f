"""Scrubbing the server's error and notice texts of the values they quote.

PostgreSQL quotes values in its messages: ``invalid input syntax for type integer:
"219-09-9999"``, ``Key (ssn)=(219-09-9999) already exists.``, ``Failing row contains (...)``, and
a ``RAISE`` repeats whatever it was given. When a statement touched PII the client may not see
in the clear, the gateway keeps the message's shape and code but blanks every quoted or
bracketed value in the human-readable fields (message, detail, hint, context, internal query).
Identifiers the server names in their own fields (schema, table, column, constraint) are kept.
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

from piigate.gateway.postgres.backend import ErrorResponse, NoticeResponse

__all__ = ["HIDDEN", "scrub", "scrub_text"]

M = TypeVar("M", ErrorResponse, NoticeResponse)

HIDDEN: Final = "…"
# Message fields that are text for people (and may quote values): M, D, H, W, q (internal query).
_TEXT_FIELDS: Final = frozenset({"M", "D", "H", "W", "q"})
_DOUBLE: Final = re.compile(r'"(?:[^"]|"")*"')
_SINGLE: Final = re.compile(r"'(?:[^']|'')*'")
# Key (a, b)=(v1, v2) ... : keep the column list, blank the values.
_KEY_VALUES: Final = re.compile(r"\)=\((?:[^()]|\([^()]*\))*\)")
_ROW: Final = re.compile(r"(Failing row contains |row )\((?:[^()]|\([^()]*\))*\)")
# A RAISE text or anything else the server repeats: digits runs of a value-like length.
_DIGITS: Final = re.compile(r"\d[\d\s\-./]{3,}\d")
# SQLSTATEs of RAISE (EXCEPTION, and NOTICE/INFO/WARNING without one of their own).
_RAISED: Final = frozenset({"P0001", "00000", "01000"})


def scrub_text(text: str) -> str:
    """``text`` with quoted strings, key values, row images and long digit runs blanked."""
    text = _KEY_VALUES.sub(f")=({HIDDEN})", text)
    text = _ROW.sub(lambda m: f"{m.group(1)}({HIDDEN})", text)
    text = _DOUBLE.sub(f'"{HIDDEN}"', text)
    text = _SINGLE.sub(f"'{HIDDEN}'", text)
    return _DIGITS.sub(HIDDEN, text)


def scrub(message: M) -> M:
    """``message`` with its text fields scrubbed (its severity, SQLSTATE, position and the
    names of schema, table, column and constraint kept). What a ``RAISE`` says is the caller's
    own text, whatever it holds: its message, detail and hint are blanked whole."""
    raised = message.get("C") in _RAISED
    fields = tuple((code, _field(code, value, raised)) for code, value in message.fields)
    return type(message)(fields)


def _field(code: str, value: str, raised: bool) -> str:
    if code not in _TEXT_FIELDS:
        return value
    if raised and code in "MDH":
        return HIDDEN
    return scrub_text(value)
