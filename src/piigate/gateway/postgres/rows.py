"""Masking result rows: a ``DataRow`` rewritten so that masked columns show only their mask.

A column of a text type (``text``, ``varchar``, ``char(n)``, ``name``, ``unknown``) carries the
same bytes in the text and the binary format (the client encoding is UTF-8), so its value is
masked with the class's rule (``gateway.http.masking``: keep the last digits, or replace whole)
in either format, when it is the catalogued column itself; a value computed from one is
replaced whole. A column of any other type (a number, a date, JSON, an array, a composite
such as a whole row) could not hold a mask and still parse in every client, so a masked value
of it becomes NULL. NULL stays NULL. The message's lengths are computed anew, so every client
reads a valid row.

The hot path is :meth:`RowMask.mask_rows`: the server's bytes of consecutive rows, masked in
one loop, each row's unmasked columns copied as slices of those bytes. Each masked column has
a function of its value's bytes (``_value_masker``); an ASCII value is masked as bytes, with
what ``KeepLast`` and ``Replace`` do to text (``test_pg_rows`` holds the two to the same
answers), any other value through the rule itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from piigate.gateway.http.masking import SEPARATORS, KeepLast, MaskRule, Replace, strictest
from piigate.gateway.postgres.backend import DataRow, FieldDescription
from piigate.gateway.postgres.wire import ProtocolViolation, Reader, frame, int16
from piigate.gateway.postgres.wire import values as encode_values

__all__ = ["TEXT_TYPES", "RowMask", "row_mask"]

# pg_type OIDs whose binary form is the text itself.
TEXT_TYPES: Final = frozenset({25, 1043, 1042, 19, 705})

# A masked value computed from a catalogued column, not the column itself: replaced whole.
_COMPUTED: Final = Replace()
# A value's bytes masked: its new bytes, or None (NULL).
ValueMask = Callable[[bytes], bytes | None]

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_HEAD = struct.Struct("!Bi")  # a message's type byte and length
_NULL: Final = _I32.pack(-1)
_DATA_ROW: Final = b"D"[0]
_SEPARATOR_BYTES: Final = "".join(sorted(SEPARATORS)).encode("ascii")
# bytes.translate table: a separator stays, every other byte becomes the mask's ``*``.
_HIDE: Final = bytes(b if b in _SEPARATOR_BYTES else ord("*") for b in range(256))


@dataclass(frozen=True, slots=True)
class RowMask:
    """Per column: None (untouched), or the rule to mask it with (``None`` rule: to NULL)."""

    columns: tuple[tuple[bool, MaskRule | None], ...]
    # Per column: its value's mask, None where it is not masked (from ``columns``).
    maskers: tuple[ValueMask | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        maskers = tuple(_value_masker(rule) if masked else None for masked, rule in self.columns)
        object.__setattr__(self, "maskers", maskers)

    def apply(self, row: DataRow) -> DataRow:
        values = list(row.values)
        for i, masker in enumerate(self.maskers[: len(values)]):
            value = values[i]
            if masker is not None and value is not None:
                values[i] = masker(value)
        return DataRow(tuple(values))

    def apply_message(self, body: bytes) -> bytes:
        """The DataRow message whose body (after its 5-byte header) is ``body``, masked: what
        ``apply`` does, on the bytes the server sent, with no DataRow in between."""
        r = Reader(body, "DataRow")
        row = self.apply(DataRow(r.values(r.count())))
        r.end()
        return frame(DataRow.TAG, int16(len(row.values)) + encode_values(row.values))

    def mask_rows(self, buf: bytes, pos: int, limit: int) -> tuple[list[bytes], int]:
        """The DataRow messages that follow each other from ``buf[pos]``, masked, each whole
        in ``buf`` and at most ``limit`` bytes long; and where the first message that is not
        one starts (the caller reads it). A row that does not read to its last byte raises
        ``ProtocolViolation``: nothing of it goes out."""
        out: list[bytes] = []
        size, maskers = len(buf), self.maskers
        unpack, pack, head = _I32.unpack_from, _I32.pack, _HEAD.pack
        while size - pos >= 7 and buf[pos] == _DATA_ROW:
            length: int = unpack(buf, pos + 1)[0]
            end = pos + 1 + length
            if length < 6 or length > limit or end > size:
                break  # a short row is the caller's to refuse; a long or cut one, to wait for
            count: int = _I16.unpack_from(buf, pos + 5)[0]
            if count < 0:
                raise _malformed("negative count")
            parts: list[bytes] = []
            copied = pos + 5  # the body, its column count first, copied in slices
            p = pos + 7
            for masker in maskers if count == len(maskers) else _fit(maskers, count):
                if p + 4 > end:
                    raise _malformed("truncated")
                n: int = unpack(buf, p)[0]
                if n < 0:
                    if n != -1:
                        raise _malformed("negative value length")
                    p += 4
                    continue  # NULL stays NULL
                start = p + 4
                p = start + n
                if p > end:
                    raise _malformed("truncated")
                if masker is not None:
                    shown = masker(buf[start:p])
                    parts.append(buf[copied : start - 4])
                    parts.append(_NULL if shown is None else pack(len(shown)) + shown)
                    copied = p
            if p != end:
                raise _malformed("trailing bytes")
            parts.append(buf[copied:end])
            body = b"".join(parts)
            out.append(head(_DATA_ROW, len(body) + 4) + body)
            pos = end
        return out, pos


def _fit(maskers: tuple[ValueMask | None, ...], count: int) -> tuple[ValueMask | None, ...]:
    """``maskers`` for a row of ``count`` columns: the columns beyond them are not masked."""
    return (maskers + (None,) * count)[:count]


def _malformed(problem: str) -> ProtocolViolation:
    return ProtocolViolation(f"malformed DataRow message: {problem}")


def _value_masker(rule: MaskRule | None) -> ValueMask:
    """The mask of a column's value bytes by ``rule`` (None: to NULL)."""
    if rule is None:
        return _to_null
    if isinstance(rule, KeepLast):
        last, width = rule.last, rule.fixed_width

        def keep_last(value: bytes) -> bytes | None:
            if not value.isascii():
                return _masked(value, rule)
            return _keep_last_ascii(value, last, width)

        return keep_last
    text = rule.text.encode("utf-8")

    def replace(value: bytes) -> bytes | None:
        return text if value.isascii() else _masked(value, rule)

    return replace


def _to_null(value: bytes) -> None:
    return None


def _keep_last_ascii(value: bytes, last: int, width: int | None) -> bytes:
    """``KeepLast(last, width).mask`` of an ASCII text, on its bytes: at most ``last``
    significant bytes (not separators) kept, never more than half of them; the separators
    before them stay in place, every other byte becomes ``*`` (or, with ``width``, ``width``
    times ``*`` then the kept bytes)."""
    significant = value.translate(None, _SEPARATOR_BYTES)
    keep = min(last, len(significant) // 2)
    if width is not None:
        return b"*" * width + (significant[len(significant) - keep :] if keep else b"")
    cut = len(value) - keep  # where the kept tail starts, if it holds no separator
    if keep and len(value[cut:].translate(None, _SEPARATOR_BYTES)) != keep:
        cut = len(value)
        while keep:
            cut -= 1
            if value[cut] not in _SEPARATOR_BYTES:
                keep -= 1
    return value[:cut].translate(_HIDE) + value[cut:]


def _masked(value: bytes | None, rule: MaskRule | None) -> bytes | None:
    if value is None or rule is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    shown = rule.mask(text)
    return None if not isinstance(shown, str) else shown.encode("utf-8")


def row_mask(
    fields: Sequence[FieldDescription],
    carried: Sequence[frozenset[str]],
    masked: frozenset[str],
    rules: Mapping[str, MaskRule],
    stored: Sequence[frozenset[str]] = (),
) -> RowMask | None:
    """The mask for rows of ``fields``, whose column ``i`` may carry the PII classes
    ``carried[i]``, when the classes ``masked`` are to be masked; None when no column is.

    A class's rule may show part of a value (its last digits) only where the column is that
    class's catalogued column as stored (``stored[i]``: the server names it as the column's
    origin). Anything computed from it (``reverse(ssn)``, ``substr(ssn, 1, 5)``,
    ``md5(ssn)``) would show other characters, or bits of a hash, under the same rule: it is
    replaced whole."""
    columns: list[tuple[bool, MaskRule | None]] = []
    any_masked = False
    for i, description in enumerate(fields):
        hit = carried[i] & masked if i < len(carried) else masked
        if not hit:
            columns.append((False, None))
            continue
        any_masked = True
        if description.type_oid not in TEXT_TYPES:
            columns.append((True, None))
        elif i < len(stored) and hit <= stored[i]:
            columns.append((True, strictest(rules[c] for c in hit if c in rules)))
        else:
            columns.append((True, _COMPUTED))
    return RowMask(tuple(columns)) if any_masked else None
