"""The outbox SMS adapter, the embedded default: messages land in the store, not on a phone.

For development and demos: ``piigate sms outbox`` prints the latest messages, codes included.
Each message is a row of the ``ceremonies`` table (purpose ``sms_outbox``) whose ``secret`` is
the keyring ciphertext of ``{"to", "text"}`` (associated data naming the row), so the number and
the code are no more readable at rest than a factor secret. ``data`` holds only the number's
hint. Messages are kept for :data:`RETENTION_SECONDS`; each send drops the older ones.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.factors import CeremonyPurpose
from piigate.factors.sms.port import SmsMessage
from piigate.store.db import Database
from piigate.store.outbox import OutboxStore

__all__ = ["RETENTION_SECONDS", "OutboxMessage", "OutboxSender"]

RETENTION_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message as the outbox kept it. ``to`` and ``text`` are None when the row cannot be
    decrypted (a keyring that lost the key it was written under)."""

    id: str
    message_id: str
    at: datetime
    hint: str
    to: Secret[str] | None = field(repr=False)
    text: Secret[str] | None = field(repr=False)


def _aad(row_id: str) -> bytes:
    return f"ceremony:{row_id}".encode()


class OutboxSender:
    name = "outbox"

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        clock: Clock,
        *,
        retention_seconds: int = RETENTION_SECONDS,
    ) -> None:
        self._rows = OutboxStore(db, purpose=CeremonyPurpose.SMS_OUTBOX)
        self._keyring = keyring
        self._clock = clock
        self._retention = timedelta(seconds=retention_seconds)

    async def send(self, message: SmsMessage) -> None:
        now = self._clock.now()
        row_id = f"out_{secrets.token_urlsafe(16)}"
        payload = json.dumps({"to": message.to.e164, "text": message.text.reveal()}).encode()
        await self._rows.append(
            id=row_id,
            secret=self._keyring.encrypt(payload, aad=_aad(row_id)),
            data={"hint": message.to.hint, "message_id": message.id},
            now=now,
            expires_at=now + self._retention,
        )

    async def latest(self, limit: int = 10) -> list[OutboxMessage]:
        """The newest ``limit`` messages, newest first."""
        rows = await self._rows.latest(limit)
        return [self._message(row.id, row.created_at, row.secret, row.data) for row in rows]

    def _message(
        self, row_id: str, at: datetime, secret: str | None, data: dict[str, object]
    ) -> OutboxMessage:
        to = text = None
        if secret is not None:
            try:
                payload = json.loads(self._keyring.decrypt(secret, aad=_aad(row_id)))
                to, text = Secret(str(payload["to"])), Secret(str(payload["text"]))
            except (DecryptionError, ValueError, KeyError, TypeError):
                pass
        return OutboxMessage(
            id=row_id,
            message_id=str(data.get("message_id", "")),
            at=at,
            hint=str(data.get("hint", "")),
            to=to,
            text=text,
        )

    async def aclose(self) -> None:
        return None
