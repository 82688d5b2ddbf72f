"""How the security pages write instants (``console/when.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from piigate.console.when import ago, utc_text

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def test_utc_text_is_utc_to_the_second() -> None:
    paris = timezone(timedelta(hours=2))
    assert utc_text(datetime(2026, 5, 4, 12, 0, 7, 999, tzinfo=paris)) == "2026-05-04 10:00:07 UTC"
    assert utc_text(datetime(2026, 5, 4, 10, 0)) == "2026-05-04 10:00:00 UTC"  # naive: UTC


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "just now"),
        (40, "40 s ago"),
        (200, "3 min ago"),
        (7300, "2 h ago"),
        (5 * 86400 + 5, "5 d ago"),
        (-240, "in 4 min"),
        (-1, "in 1 s"),
    ],
)
def test_ago_says_the_largest_whole_unit(seconds: int, text: str) -> None:
    assert ago(NOW - timedelta(seconds=seconds), NOW) == text
