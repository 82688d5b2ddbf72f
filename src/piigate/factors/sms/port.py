"""The SMS provider port: one narrow protocol, and an in-memory sender shipped beside it.

Adapters: ``outbox`` (the embedded default: messages land in the store), ``webhook`` (a signed
JSON POST to your own service) and ``twilio`` (the Twilio Messages REST API). Which one a node
uses is configuration (``settings``).

A message holds a one-time code and a phone number: adapters never log either, and an
:class:`SmsDeliveryError` carries only the provider's name and a short, fixed reason, never the
provider's own error text (which can quote the number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from piigate.crypto.secret import Secret
from piigate.factors.sms.phone import PhoneNumber

__all__ = ["MemorySender", "SmsDeliveryError", "SmsMessage", "SmsSender"]


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One text to one number. ``id`` is unique per message (receivers may de-duplicate on it)."""

    id: str
    to: PhoneNumber
    text: Secret[str] = field(repr=False)  # carries the code


class SmsDeliveryError(Exception):
    """The provider did not accept the message. ``reason`` is one of a few fixed words
    (``timeout``, ``network``, ``http_503``, ``rejected``...), safe to log and audit."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason


class SmsSender(Protocol):
    """Hands a message to an SMS provider. ``send`` returns once the provider accepted it, or
    raises :class:`SmsDeliveryError`."""

    @property
    def name(self) -> str: ...

    async def send(self, message: SmsMessage) -> None: ...

    async def aclose(self) -> None: ...


class MemorySender:
    """Keeps messages in a list, for tests and embedding. ``outage`` (a reason) makes every send
    fail as a provider outage would."""

    name = "memory"

    def __init__(self) -> None:
        self.sent: list[SmsMessage] = []
        self.outage: str | None = None

    async def send(self, message: SmsMessage) -> None:
        if self.outage is not None:
            raise SmsDeliveryError(self.name, self.outage)
        self.sent.append(message)

    async def aclose(self) -> None:
        return None
