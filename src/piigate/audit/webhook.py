"""The webhook alert sink: each alert POSTed as JSON, signed, retried with back-off.

Body: the alert (``alerts.alert_json``). Header ``X-PIIGate-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes under the configured secret (as GitHub signs its webhooks):
the receiver recomputes it over what it received and compares in constant time
(:func:`verify_signature`). ``X-PIIGate-Alert`` carries the alert's id, so a receiver can
drop a delivery it already has (a retry after a lost answer).

A 2xx answer delivers. A network error, a time-out, a 429 or a 5xx is retried: the n-th retry
waits between half and all of ``min(cap, base * 2**n)`` seconds ("equal jitter", so nodes that
failed together do not retry together, and each wait is at least the one before it until the
cap). Any other answer (the receiver refuses the alert) is not retried. After ``max_attempts``
the alert is given up and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

import httpx

from piigate.audit.alerts import Alert, alert_json
from piigate.audit.sink_settings import WebhookSettings
from piigate.audit.sinks import QueuedSink
from piigate.crypto.secret import Secret

__all__ = ["ALERT_HEADER", "SIGNATURE_HEADER", "WebhookSink", "backoff", "sign", "verify_signature"]

_logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-PIIGate-Signature"
ALERT_HEADER: Final = "X-PIIGate-Alert"
BASE_DELAY: Final = 0.5
MAX_DELAY: Final = 60.0


def sign(secret: Secret[str], body: bytes) -> str:
    """The ``X-PIIGate-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: Secret[str], body: bytes, header: str) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` (for receivers)."""
    return hmac.compare_digest(sign(secret, body), header.strip())


def backoff(
    retry: int, *, base: float = BASE_DELAY, cap: float = MAX_DELAY, rng: random.Random
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
    ceiling = min(cap, base * 2.0**retry)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class WebhookSink(QueuedSink):
    name = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(queue=settings.queue)
        if settings.secret is None:
            raise ValueError("the alert webhook needs its secret")
        self.url = settings.url
        self.max_attempts = settings.max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._secret = settings.secret
        self._sleep = sleep
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 5.0)),
            follow_redirects=False,
            trust_env=False,
        )

    async def deliver(self, alert: Alert) -> bool:
        body = json.dumps(alert_json(alert), separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            ALERT_HEADER: alert.id,
        }
        for attempt in range(self.max_attempts):
            if attempt:
                delay = backoff(
                    attempt - 1, base=self.base_delay, cap=self.max_delay, rng=self._rng
                )
                await self._sleep(delay)
            outcome = await self._post(body, headers)
            if outcome is None:
                return True
            if not outcome.startswith("retry"):
                break
        # The status or error class only: never the body or the secret.
        _logger.warning("alert webhook gave up on %s: %s", alert.id, outcome)
        return False

    async def _post(self, body: bytes, headers: dict[str, str]) -> str | None:
        """None when delivered; else why, ``retry ...`` when another attempt may succeed."""
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return "retry timeout"
        except httpx.HTTPError as exc:
            return f"retry {type(exc).__name__}"
        status = response.status_code
        if 200 <= status < 300:
            return None
        if status == 429 or status >= 500:
            return f"retry http_{status}"
        return f"http_{status}"

    async def release(self) -> None:
        await self._client.aclose()
