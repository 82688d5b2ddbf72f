"""``Bounded``: the risk engine's per-process memos keep their newest entries only."""

from __future__ import annotations

import pytest

from piigate.memo import Bounded


def test_a_bounded_memo_drops_its_oldest_entry_beyond_its_size() -> None:
    memo = Bounded[str, int](3)
    for n, key in enumerate("abcd"):
        memo.put(key, n)
    assert dict(memo) == {"b": 1, "c": 2, "d": 3}
    memo.put("b", 10)  # a new value for a kept key keeps its place
    memo.put("e", 4)
    assert dict(memo) == {"c": 2, "d": 3, "e": 4}
    assert memo.get("b") is None


def test_a_bounded_memo_holds_something() -> None:
    with pytest.raises(ValueError):
        Bounded[str, int](0)
