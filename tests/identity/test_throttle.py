from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.identity.throttle import (
    FailureCount,
    ThrottlePolicy,
    backoff_seconds,
    login_verdict,
    throttle_keys,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_free_failures_then_exponential_backoff() -> None:
    delays = [backoff_seconds(n, free=5, cap=900) for n in range(0, 16)]
    assert delays[:6] == [0] * 6
    assert delays[6:11] == [2, 4, 8, 16, 32]
    assert delays[14] == 512
    assert delays[15] == 900  # 1024 capped


@given(st.integers(min_value=0, max_value=10**9))
def test_backoff_grows_monotonically_and_caps(n: int) -> None:
    a = backoff_seconds(n, free=5, cap=900)
    b = backoff_seconds(n + 1, free=5, cap=900)
    assert 0 <= a <= b <= 900


def test_allowed_within_free_failures() -> None:
    verdict = login_verdict(user=5, ip=3, now=NOW)
    assert verdict.allowed and verdict.retry_after == 0


def test_without_last_failure_time_the_full_delay_applies() -> None:
    verdict = login_verdict(user=7, now=NOW)
    assert not verdict.allowed
    assert verdict.retry_after == 4


def test_delay_counts_from_the_last_failure() -> None:
    last = NOW - timedelta(seconds=3)
    verdict = login_verdict(user=FailureCount(7, last), now=NOW)
    assert (verdict.allowed, verdict.retry_after) == (False, 1)
    later = login_verdict(user=FailureCount(7, last), now=NOW + timedelta(seconds=1))
    assert (later.allowed, later.retry_after) == (True, 0)


def test_future_last_failure_waits_at_most_the_delay() -> None:
    verdict = login_verdict(user=FailureCount(6, NOW + timedelta(hours=1)), now=NOW)
    assert verdict.retry_after == 2


def test_network_has_a_larger_allowance_and_the_longest_wait_wins() -> None:
    assert login_verdict(user=0, ip=20, now=NOW).allowed
    verdict = login_verdict(user=6, ip=30, now=NOW)
    assert verdict.retry_after == 900


def test_policy_is_configurable_and_checked() -> None:
    policy = ThrottlePolicy(free_failures=3, max_delay=60, window=60)
    assert login_verdict(user=10, now=NOW, policy=policy).retry_after == 60
    with pytest.raises(ValueError):
        ThrottlePolicy(max_delay=900, window=60)


def test_throttle_keys() -> None:
    user, net = throttle_keys(" Alice ", "2001:db8:1:2:3:4:5:6")
    assert user == throttle_keys("alice", None)[0]
    assert "alice" not in user
    assert net == "login:net:2001:db8:1:2::/64"
    assert throttle_keys("a", "203.0.113.7")[1] == "login:net:203.0.113.7"
    assert throttle_keys("a", "::ffff:203.0.113.7")[1] == "login:net:203.0.113.7"
    assert throttle_keys("a", "not an ip")[1] is None
