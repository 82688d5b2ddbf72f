"""The audit hash chain, without I/O: canonical JSON, event hashes and chain verification.

Each event commits to its predecessor: ``hash = sha256(prev_hash ‖ canonical JSON of (seq, at,
type, subject_id, data))``, with ``GENESIS`` before the first event. An edited event no longer
matches its own hash; an edited event whose hash was recomputed no longer matches the
``prev_hash`` stored in the next event; a removed event leaves a gap in ``seq``; a removed tail
is caught by the head anchor (``audit_head``), which every append updates in the same
transaction. Verification hashes the stored data text exactly as stored and refuses a text that
is not canonical (the writer never writes one), so what SQL readers see is what was hashed.
What a chain alone cannot catch is a rewrite of the tail *and* the head together: anchor the
head elsewhere (another system, a signed checkpoint) when that matters.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

__all__ = [
    "GENESIS",
    "ChainHead",
    "ChainReport",
    "ChainRow",
    "ChainVerifier",
    "canonical_form",
    "canonical_json",
    "event_hash",
    "event_hash_text",
    "format_time",
    "verify_rows",
]

GENESIS = "0" * 64


def format_time(at: datetime) -> str:
    """ISO-8601 in UTC with microseconds, e.g. ``2026-01-01T00:00:00.000000Z``.

    One fixed width, so the text form is stable however the datetime was built (naive values
    are taken to be UTC) and both backends, which keep microseconds, round-trip it exactly.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    utc = at.astimezone(UTC)
    if utc.year >= 1000:  # isoformat pads years to 4 digits, strftime's %Y does not
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("audit data cannot hold NaN or infinity")
        return value
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit data keys must be strings, not {type(key).__name__}")
            out[key] = _plain(item)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    # bytes included: raw bytes in an audit event are most likely key material or a token.
    raise TypeError(f"audit data cannot hold a {type(value).__name__}")


def canonical_json(data: object) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 text, datetimes as UTC ISO-8601.

    Sets become sorted lists, tuples lists, Decimals strings, enums their values. Parsing the
    result and canonicalising it again gives the same text, so stored events re-hash exactly.
    """
    return canonical_form(data)[0]


def canonical_form(data: object) -> tuple[str, Any]:
    """:func:`canonical_json` of ``data``, and that text parsed back (plain JSON values).

    The C encoder prints plain data (what events almost always hold) and calls
    ``_json_default`` only for the rest; the exact pure-Python rules are the fallback. The
    encoder would quietly print ``{1: x}`` as ``{"1": x}``, making two different inputs one
    text, so its output is accepted only when it parses back equal to ``data``: non-string
    keys, tuples and anything ``_json_default`` converted fail that test and take the exact
    rules, which refuse what they cannot keep. The parse is needed anyway (the audit log
    stores and publishes the plain form), and one dict comparison in C is cheaper than
    walking the data in Python to check its keys first.
    """
    try:
        text = _ENCODER.encode(data)
    except (_NeedsSlowPath, TypeError, ValueError):
        text = _slow_canonical(data)  # the exact rules: the same text, or the precise error
        return text, json.loads(text)
    plain = json.loads(text)
    if plain != data:
        text = _slow_canonical(data)
        plain = json.loads(text)
    return text, plain


class _NeedsSlowPath(Exception):
    pass


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    # Sets, non-dict mappings, enums with non-str/int values, bytes...: the exact rules.
    raise _NeedsSlowPath


_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=_json_default,
)


def _slow_canonical(data: object) -> str:
    return json.dumps(
        _plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def event_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    type: str,
    subject_id: str | None,
    data: Mapping[str, object],
) -> str:
    """``sha256(prev_hash ‖ canonical JSON of the event's fields)`` as lowercase hex."""
    return event_hash_text(prev_hash, seq, at, type, subject_id, canonical_json(data))


def event_hash_text(
    prev_hash: str,
    seq: int,
    at: datetime,
    type: str,
    subject_id: str | None,
    data_text: str,
) -> str:
    """:func:`event_hash` for data already in canonical JSON (the writer has it at hand).

    The body is assembled in sorted key order — at, data, seq, subject_id, type — exactly as
    ``canonical_json`` of the whole event would print it, without walking ``data`` again.
    """
    dump = _SCALAR.encode
    body = (
        f'{{"at":{dump(format_time(at))},"data":{data_text},"seq":{int(seq)},'
        f'"subject_id":{dump(subject_id)},"type":{dump(type)}}}'
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


# json.dumps(value, ensure_ascii=False), without building an encoder per call.
_SCALAR = json.JSONEncoder(ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One stored event as verification sees it; ``data`` is the stored JSON text (verified
    byte for byte) or a mapping (hashed in canonical form)."""

    seq: int
    at: datetime
    type: str
    subject_id: str | None
    data: Mapping[str, object] | str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The anchor: the seq and hash of the last appended event (0 and GENESIS when empty)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """``count`` events verified; when not ``ok``, the first sequence number that fails.

    Everything before ``first_bad_seq`` verifies; ``first_bad_seq`` itself is the first event
    that does not (or, for a gap or truncated tail, the first one missing). An event edited and
    re-hashed is consistent on its own, so the break shows at the *next* event, whose reason
    names the altered predecessor.
    """

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None


class ChainVerifier:
    """Incremental verification: :meth:`feed` rows in seq order, then :meth:`finish`."""

    def __init__(self) -> None:
        self._next_seq = 1
        self._prev_hash = GENESIS
        self._count = 0
        self._bad: tuple[int, str] | None = None

    @property
    def failed(self) -> bool:
        return self._bad is not None

    def feed(self, row: ChainRow) -> bool:
        """Check one row; returns False once the chain is broken (later rows are not needed)."""
        if self._bad is not None:
            return False
        seq = row.seq
        expected = self._next_seq
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            return self._fail(expected, f"event {missing} missing (the next stored is {seq})")
        if seq < expected:
            return self._fail(seq, f"event {seq} is out of order or duplicated")
        if row.prev_hash != self._prev_hash:
            if seq == 1:
                return self._fail(seq, "event 1 does not start from the genesis hash")
            return self._fail(
                seq,
                f"event {seq} does not link to event {seq - 1}: "
                f"event {seq - 1} was altered, replaced or removed",
            )
        try:
            text = _stored_text(row.data)
        except (TypeError, ValueError):
            return self._fail(seq, f"event {seq} holds unreadable data")
        if text is None:
            return self._fail(
                seq,
                f"event {seq} was altered: its data is not in canonical form "
                "(a duplicate key, reordered keys or extra whitespace)",
            )
        computed = event_hash_text(row.prev_hash, seq, row.at, row.type, row.subject_id, text)
        if computed != row.hash:
            return self._fail(seq, f"event {seq} was altered: its hash does not match its contents")
        self._prev_hash = row.hash
        self._next_seq = seq + 1
        self._count += 1
        return True

    def finish(self, head: ChainHead | None = None) -> ChainReport:
        """The verdict; with ``head``, also checks that the chain ends where the anchor says."""
        if self._bad is None and head is not None:
            last = self._next_seq - 1
            if head.seq > last:
                self._bad = (
                    last + 1,
                    f"the chain ends at event {last} but the head records event {head.seq}: "
                    "events were removed from the end",
                )
            elif head.seq < last:
                self._count = head.seq
                self._bad = (
                    head.seq + 1,
                    f"event {head.seq + 1} lies past the recorded head (event {head.seq}): "
                    "events were added outside the audit log",
                )
            elif head.hash != self._prev_hash:
                self._count = max(0, last - 1)
                self._bad = (
                    last,
                    f"the head's hash does not match event {last}: "
                    "the last event was replaced or the head altered",
                )
        if self._bad is None:
            return ChainReport(ok=True, count=self._count)
        seq, reason = self._bad
        return ChainReport(ok=False, count=self._count, first_bad_seq=seq, reason=reason)

    def _fail(self, seq: int, reason: str) -> bool:
        self._bad = (seq, reason)
        return False


def _stored_text(data: Mapping[str, object] | str) -> str | None:
    """The exact text an event's hash covers: stored text as it is (None when it is not what
    the writer would have written), a mapping in canonical JSON.

    The stored bytes are what SQL readers see, so they, not a re-encoding of them, must be
    what was hashed. A text that is not canonical cannot have come from the writer: with a
    duplicate key JSON parsers disagree on the value (Python's and PostgreSQL's keep the last,
    SQLite's ``json_extract`` the first), so such a row could read one way and verify another.
    Raises ValueError or TypeError when the data is not a JSON object.
    """
    if not isinstance(data, str):
        return canonical_json(data)
    parsed = json.loads(data)
    if not isinstance(parsed, dict):
        raise TypeError("event data is not an object")
    return data if canonical_json(parsed) == data else None


def verify_rows(rows: Iterable[ChainRow], head: ChainHead | None = None) -> ChainReport:
    """Verify a whole chain given in seq order, and optionally its head anchor."""
    verifier = ChainVerifier()
    for row in rows:
        if not verifier.feed(row):
            break
    return verifier.finish(head)
