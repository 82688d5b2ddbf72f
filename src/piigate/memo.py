"""``Bounded``: a per-process memo that keeps its newest entries only (the risk engine's closed
windows' counts, subjects' counter keys, records' keyed hashes and recent contexts' signals; the
engine's young unlock challenges).

Each is a plain mapping with a size: putting one more entry drops the oldest one (first put,
first dropped). What a memo holds can always be worked out again, so a dropped entry costs a
recomputation, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

__all__ = ["Bounded"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class Bounded(OrderedDict[_K, _V]):
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a bounded memo holds at least one entry")
        super().__init__()
        self.size = size

    def put(self, key: _K, value: _V) -> None:
        """Keep ``value`` under ``key``, dropping the oldest entry beyond :attr:`size`."""
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
