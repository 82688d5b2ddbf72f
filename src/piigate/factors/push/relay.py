"""The push relay: how a device is woken when a push waits for it.

``PushRelay`` is the port (a mobile push service behind a relay of your own); ``WebhookRelay`` the
adapter that POSTs ids to it. Ids only: the device fetches the details over its own signed
channel, so the relay never sees a number, an action or a PII class.
"""

from __future__ import annotations

from typing import Protocol

import httpx
import structlog

__all__ = ["PushRelay", "WebhookRelay"]

log = structlog.get_logger("piigate.push")


class PushRelay(Protocol):
    """Wakes a device that a push waits for it (a mobile push service, via a relay). Carries
    ids only; the device fetches the details over its own signed channel."""

    name: str

    async def notify(self, *, device_id: str, push_id: str) -> bool: ...


class WebhookRelay:
    """POSTs ``{"device_id", "push_id"}`` to the relay URL (``push_relay_url``). Best effort:
    devices poll anyway, so a relay failure is logged and the push stays valid."""

    name = "webhook"

    def __init__(self, url: str, *, timeout: float = 3.0) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def notify(self, *, device_id: str, push_id: str) -> bool:
        try:
            response = await self._client.post(
                self.url, json={"device_id": device_id, "push_id": push_id}
            )
        except httpx.HTTPError as exc:
            log.warning("push_relay_failed", push_id=push_id, error=type(exc).__name__)
            return False
        if response.is_success:
            return True
        log.warning("push_relay_failed", push_id=push_id, status=response.status_code)
        return False

    async def aclose(self) -> None:
        await self._client.aclose()
