"""Login throttling policy: exponential back-off after a few free failures. Pure; no storage.

The caller keeps the failure counts (the store's ``counters.hit(key, window_seconds, now)``)
for two keys from :func:`throttle_keys` — the user name and the client network — asks
:func:`login_verdict` *before* checking the password, and counts a failure only after a wrong
one. A refused attempt is not checked and not counted, so an attacker gains nothing by
retrying early and a locked-out user's lock does not grow by itself.

Per user: 5 free failures, then 2, 4, 8 … seconds, capped at 15 minutes — at most a few dozen
guesses an hour per account (NIST SP 800-63B §5.2.2 allows at most 100 consecutive failures;
this stays far below). Per network: a larger allowance, since many users share a NAT, but the
same curve, so one client cannot spray passwords across many accounts.

Caveat: per-user back-off lets anyone delay a victim's logins by failing on purpose; the delay
is bounded by the cap, and sessions already open are unaffected.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

from piigate.origins import client_network

__all__ = [
    "DEFAULT_THROTTLE",
    "FailureCount",
    "ThrottlePolicy",
    "ThrottleVerdict",
    "backoff_seconds",
    "login_verdict",
    "throttle_keys",
]


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int = 5
    ip_free_failures: int = 20
    max_delay: int = 15 * 60
    # How long a failure counts; longer than max_delay, or the back-off would reset itself.
    window: int = 60 * 60

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.ip_free_failures < 0 or self.max_delay < 1:
            raise ValueError("free failures must be >= 0 and max_delay >= 1")
        if self.window < self.max_delay:
            raise ValueError("window must be at least max_delay")


DEFAULT_THROTTLE = ThrottlePolicy()


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failures of one key within the policy window, and when the latest one happened.

    Without ``last_at`` the latest failure is taken to be now: the full delay applies.
    """

    count: int
    last_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ThrottleVerdict:
    allowed: bool
    retry_after: int  # seconds; 0 when allowed


def backoff_seconds(failures: int, *, free: int, cap: int) -> int:
    """The wait after ``failures`` failures: 0 up to ``free``, then 2^k seconds, at most ``cap``."""
    k = failures - free
    if k <= 0:
        return 0
    # Clamp the exponent before raising 2 to it: counts come from storage, not from us.
    delay: int = 2 ** min(k, cap.bit_length())
    return min(cap, delay)


def login_verdict(
    *,
    user: FailureCount | int,
    ip: FailureCount | int | None = None,
    now: datetime,
    policy: ThrottlePolicy = DEFAULT_THROTTLE,
) -> ThrottleVerdict:
    """May a login attempt proceed now? If not, how many seconds until it may."""
    waits = [_remaining(user, policy.free_failures, policy.max_delay, now)]
    if ip is not None:
        waits.append(_remaining(ip, policy.ip_free_failures, policy.max_delay, now))
    wait = max(waits)
    return ThrottleVerdict(allowed=wait == 0, retry_after=wait)


def _remaining(failures: FailureCount | int, free: int, cap: int, now: datetime) -> int:
    if isinstance(failures, int):
        failures = FailureCount(failures)
    delay = backoff_seconds(failures.count, free=free, cap=cap)
    if delay == 0 or failures.last_at is None:
        return delay
    left = (failures.last_at - now).total_seconds() + delay
    # A last failure "in the future" (clock skew between nodes) still waits at most the delay.
    return min(delay, max(0, math.ceil(left)))


def throttle_keys(username: str, ip: str | None) -> tuple[str, str | None]:
    """Counter keys for a login: ``("login:user:<digest>", "login:net:<network>")``.

    The user name is hashed (after case folding) so counter stores hold no user names in the
    clear. An IPv6 client is counted by its /64, since one subscriber usually holds a whole
    /64; an IPv4 client by its address. An unparsable ``ip`` gives None (no network key).
    """
    user_key = hashlib.sha256(username.strip().casefold().encode("utf-8")).hexdigest()[:32]
    network = client_network(ip) if ip is not None else None
    net_key = None if network is None else f"login:net:{network}"
    return f"login:user:{user_key}", net_key
