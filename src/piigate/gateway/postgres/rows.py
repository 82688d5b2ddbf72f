"""Masking result rows: a ``DataRow`` rewritten so that masked columns show only their mask.

A column of a text type (``text``, ``varchar``, ``char(n)``, ``name``, ``unknown``) carries the
same bytes in the text and the binary format (the client encoding is UTF-8), so its value is
masked with the class's rule (``gateway.http.masking``: keep the last digits, or replace whole)
in either format. A column of any other type (a number, a date, JSON, an array, a composite
such as a whole row) could not hold a mask and still parse in every client, so a masked value
of it becomes NULL. NULL stays NULL. The message's lengths are computed anew, so every client
reads a valid row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from piigate.gateway.http.masking import MaskRule, strictest
from piigate.gateway.postgres.backend import DataRow, FieldDescription
from piigate.gateway.postgres.wire import Reader, frame, int16
from piigate.gateway.postgres.wire import values as encode_values

__all__ = ["TEXT_TYPES", "RowMask", "row_mask"]

# pg_type OIDs whose binary form is the text itself.
TEXT_TYPES: Final = frozenset({25, 1043, 1042, 19, 705})


@dataclass(frozen=True, slots=True)
class RowMask:
    """Per column: None (untouched), or the rule to mask it with (``None`` rule: to NULL)."""

    columns: tuple[tuple[bool, MaskRule | None], ...]

    def apply(self, row: DataRow) -> DataRow:
        values = list(row.values)
        self._mask(values)
        return DataRow(tuple(values))

    def apply_message(self, body: bytes) -> bytes:
        """The DataRow message whose body (after its 5-byte header) is ``body``, masked: what
        ``apply`` does, on the bytes the server sent, with no DataRow in between."""
        r = Reader(body, "DataRow")
        values = list(r.values(r.count()))
        r.end()
        self._mask(values)
        return frame(DataRow.TAG, int16(len(values)) + encode_values(values))

    def _mask(self, values: list[bytes | None]) -> None:
        for i, (masked, rule) in enumerate(self.columns):
            if masked and i < len(values):
                values[i] = _masked(values[i], rule)


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
) -> RowMask | None:
    """The mask for rows of ``fields``, whose column ``i`` may carry the PII classes
    ``carried[i]``, when the classes ``masked`` are to be masked; None when no column is."""
    columns: list[tuple[bool, MaskRule | None]] = []
    any_masked = False
    for i, description in enumerate(fields):
        hit = carried[i] & masked if i < len(carried) else masked
        if not hit:
            columns.append((False, None))
            continue
        any_masked = True
        if description.type_oid in TEXT_TYPES:
            columns.append((True, strictest(rules[c] for c in hit if c in rules)))
        else:
            columns.append((True, None))
    return RowMask(tuple(columns)) if any_masked else None
