"""The webhook SMS adapter: a signed JSON POST to a service of your own that sends the SMS.

Body: ``{"id": "...", "to": "+14155550100", "text": "piigate: 123456 is your code ..."}``.
Header: ``PIIGate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``, the
scheme Stripe and GitHub use: the receiver recomputes the MAC over the exact bytes received,
compares in constant time (:func:`verify_signature`), and refuses a timestamp outside its
tolerance, so a captured request cannot be replayed later. Any 2xx answer means accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from piigate.crypto.secret import Secret
from piigate.factors.sms.port import SmsDeliveryError, SmsMessage

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE",
    "WebhookSender",
    "sign_payload",
    "verify_signature",
]

SIGNATURE_HEADER = "PIIGate-Signature"
# How old a signed request a receiver should accept (seconds), either way.
SIGNATURE_TOLERANCE = 300


def sign_payload(secret: Secret[str], body: bytes, *, timestamp: int) -> str:
    """The ``PIIGate-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.reveal().encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: Secret[str],
    body: bytes,
    header: str,
    *,
    now: int,
    tolerance: int = SIGNATURE_TOLERANCE,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance`` seconds of ``now`` (for receivers of the webhook)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign_payload(secret, body, timestamp=timestamp).partition("v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


class WebhookSender:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: Secret[str],
        *,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), follow_redirects=False
        )

    async def send(self, message: SmsMessage) -> None:
        body = json.dumps(
            {"id": message.id, "to": message.to.e164, "text": message.text.reveal()},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        # Wall-clock time, not the service's clock: the receiver checks it against its own.
        signature = sign_payload(self._secret, body, timestamp=int(time.time()))
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise SmsDeliveryError(self.name, "timeout") from None
        except httpx.HTTPError:
            raise SmsDeliveryError(self.name, "network") from None
        if not response.is_success:
            raise SmsDeliveryError(self.name, f"http_{response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
