from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from piigate.factors.lockout import FailurePolicy, LockoutState, lockout_state

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NIST = FailurePolicy(max_failures=100)
PSD2 = FailurePolicy(max_failures=5)
OPEN = LockoutState(locked=False, retry_after=0, permanently_locked=False)
LOCKED = LockoutState(locked=True, retry_after=0, permanently_locked=True)


def test_no_failures_no_wait() -> None:
    assert lockout_state(0, None, now=T0, policy=PSD2) == OPEN


@pytest.mark.parametrize(("failures", "delay"), [(1, 1), (2, 2), (3, 4), (4, 8), (10, 512)])
def test_back_off_doubles(failures: int, delay: int) -> None:
    assert NIST.delay(failures) == delay
    assert lockout_state(failures, T0, now=T0, policy=NIST) == LockoutState(True, delay, False)
    just_before = T0 + timedelta(seconds=delay - 0.5)
    assert lockout_state(failures, T0, now=just_before, policy=NIST) == LockoutState(True, 1, False)
    assert lockout_state(failures, T0, now=T0 + timedelta(seconds=delay), policy=NIST) == OPEN


def test_back_off_is_capped_by_max_delay() -> None:
    assert NIST.delay(11) == 900
    assert NIST.delay(99) == 900
    assert lockout_state(99, T0, now=T0 + timedelta(seconds=60), policy=NIST) == LockoutState(
        True, 840, False
    )
    assert lockout_state(99, T0, now=T0 + timedelta(seconds=900), policy=NIST) == OPEN


def test_the_delay_grows_monotonically_and_never_overflows() -> None:
    policy = FailurePolicy(max_failures=10_000, base_delay=0.5, max_delay=3600)
    delays = [policy.delay(n) for n in range(0, 5000)]
    assert delays == sorted(delays)
    assert delays[0] == 0 and delays[1] == 0.5 and delays[-1] == 3600


@pytest.mark.parametrize(("policy", "cap"), [(PSD2, 5), (NIST, 100)])
def test_locked_at_max_failures(policy: FailurePolicy, cap: int) -> None:
    much_later = T0 + timedelta(days=365)
    assert not lockout_state(cap - 1, T0, now=much_later, policy=policy).locked
    for failures in (cap, cap + 1, cap * 3):
        assert lockout_state(failures, T0, now=much_later, policy=policy) == LOCKED


def test_psd2_sequence() -> None:
    # Five wrong codes, each after its back-off has run out: the fifth locks for good.
    at, failures, last = T0, 0, None
    for expected_delay in (1, 2, 4, 8):
        assert not lockout_state(failures, last, now=at, policy=PSD2).locked
        failures, last = failures + 1, at
        assert lockout_state(failures, last, now=at, policy=PSD2).retry_after == expected_delay
        at += timedelta(seconds=expected_delay)
    assert not lockout_state(failures, last, now=at, policy=PSD2).locked
    failures += 1
    assert lockout_state(failures, at, now=at + timedelta(days=1), policy=PSD2) == LOCKED


def test_failures_without_a_time_fail_closed() -> None:
    assert lockout_state(3, None, now=T0, policy=NIST) == LockoutState(True, 4, False)


def test_zero_base_delay_means_only_the_cap() -> None:
    policy = FailurePolicy(max_failures=3, base_delay=0)
    assert lockout_state(2, T0, now=T0, policy=policy) == OPEN
    assert lockout_state(3, T0, now=T0, policy=policy) == LOCKED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"max_failures": 5, "base_delay": -1},
        {"max_failures": 5, "max_delay": -1},
    ],
)
def test_policy_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FailurePolicy(**kwargs)  # type: ignore[arg-type]
