"""Scrubbing the server's error and notice texts of the values they quote.

PostgreSQL quotes values in its messages: ``invalid input syntax for type integer:
"219-09-9999"``, ``Key (ssn)=(219-09-9999) already exists.``, ``Failing row contains (...)``, and
a ``RAISE`` repeats whatever it was given. When a statement touched PII the client may not see
in the clear, the gateway keeps the message's shape and code but blanks every quoted or
bracketed value in the human-readable fields (message, detail, hint, context, internal query).
Identifiers the server names in their own fields (schema, table, column, constraint) are kept,
except in a ``RAISE``, where they are whatever the caller set.
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
_KEY_VALUES: Final = re.compile(r"\)=\(.*\)", re.DOTALL)
# A row image's values are not quoted (a value may hold a lone parenthesis): everything up to
# the field's last closing parenthesis is blanked.
_ROW: Final = re.compile(r"(Failing row contains |row )\(.*\)", re.DOTALL)
# A RAISE text or anything else the server repeats: digits runs of a value-like length.
_DIGITS: Final = re.compile(r"\d[\d\s\-./]{3,}\d")
# SQLSTATEs of RAISE (EXCEPTION, and NOTICE/INFO/WARNING without one of their own).
_RAISED: Final = frozenset({"P0001", "00000", "01000"})
# A RAISE ... USING ERRCODE = '23514' has any SQLSTATE: the server's context names the RAISE.
_RAISE_CONTEXT: Final = re.compile(r"\bat RAISE\b")
# What a RAISE sets with USING SCHEMA/TABLE/COLUMN/DATATYPE/CONSTRAINT is the caller's text too.
_NAMES: Final = frozenset("stcdn")


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
    own text, whatever it holds: its message, detail, hint and the names it set (``USING
    TABLE = ...``) are blanked whole, whatever SQLSTATE it chose (its context says RAISE)."""
    context = message.get("W") or ""
    raised = message.get("C") in _RAISED or _RAISE_CONTEXT.search(context) is not None
    fields = tuple((code, _field(code, value, raised)) for code, value in message.fields)
    return type(message)(fields)


def _field(code: str, value: str, raised: bool) -> str:
    if raised and (code in "MDH" or code in _NAMES):
        return HIDDEN
    if code not in _TEXT_FIELDS:
        return value
    return scrub_text(value)
