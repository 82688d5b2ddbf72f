"""Failed-verification throttling per factor: exponential back-off, then a hard lock.

NIST SP 800-63B-4 §3.2.2 (rate limiting) caps consecutive failed attempts on one authenticator
at 100; PSD2's RTS (Commission Delegated Regulation 2018/389, Art. 4(3)(d)) at 5 (CONTRACT §5.3).
Between failures the wait doubles: ``base_delay * 2**(failures - 1)``, at most ``max_delay``.
At ``max_failures`` the factor is locked until a recovery code or an administrator resets it.

Pure: the caller reads ``failures`` and ``last_failure_at`` from the store and passes ``now``.
To keep parallel guesses under the cap, count first: ``n = await
store.record_factor_failure(id, now=now)`` *before* checking the code, refuse when
``n > max_failures``, and ``reset_factor_failures`` after a success. Each attempt then holds a
distinct count, so no burst of concurrent guesses can check more than ``max_failures`` codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

__all__ = ["FailurePolicy", "LockoutState", "lockout_state"]

# 2**63 seconds is far past any max_delay; capping the exponent keeps the float finite.
_MAX_EXPONENT = 63


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """``max_failures`` consecutive failures lock the factor; delays are in seconds."""

    max_failures: int
    base_delay: float = 1.0
    max_delay: float = 900.0

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (0 for none)."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, _MAX_EXPONENT)
        return min(self.base_delay * 2.0**exponent, self.max_delay)


@dataclass(frozen=True, slots=True)
class LockoutState:
    """``locked``: refuse the attempt now. ``retry_after``: whole seconds until the back-off ends
    (0 when not locked, and when permanently locked: waiting does not help)."""

    locked: bool
    retry_after: int
    permanently_locked: bool


def lockout_state(
    failures: int,
    last_failure_at: datetime | None,
    *,
    now: datetime,
    policy: FailurePolicy,
) -> LockoutState:
    """Whether a factor with ``failures`` consecutive failures may be tried at ``now``."""
    if failures >= policy.max_failures:
        return LockoutState(locked=True, retry_after=0, permanently_locked=True)
    delay = policy.delay(failures)
    if delay <= 0:
        return LockoutState(locked=False, retry_after=0, permanently_locked=False)
    if last_failure_at is None:
        # Failures without a time cannot come from the store (both are set in one UPDATE);
        # fail closed and make the caller wait the full delay.
        return LockoutState(locked=True, retry_after=math.ceil(delay), permanently_locked=False)
    remaining = delay - (now - last_failure_at).total_seconds()
    if remaining <= 0:
        return LockoutState(locked=False, retry_after=0, permanently_locked=False)
    return LockoutState(locked=True, retry_after=math.ceil(remaining), permanently_locked=False)
