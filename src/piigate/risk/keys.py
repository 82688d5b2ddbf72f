"""The deployment's risk key: the HMAC key under which the risk engine hashes addresses,
networks, device ids and subjects (``observation.keyed``) in its history and counters.

32 random bytes shared by every node through the store, as the SMS number key is: one
``ceremonies`` row (purpose ``risk_key``, never expiring) whose ``secret`` is the key's keyring
ciphertext. The first node to need it creates it; a node that loses that insert race reads the
winner's. The key must outlive key rotations (the history would otherwise forget everyone), so
it is its own random key, sealed by the keyring's data key, not derived from it. It is never
logged (``Secret``).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Final, Protocol

from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.errors import ServiceUnavailable
from piigate.factors import CeremonyPurpose

__all__ = ["RISK_KEY_ID", "KeyRows", "load_risk_key"]

RISK_KEY_ID: Final = "cer_risk_key"
_AAD: Final = b"risk:key"
_NEVER: Final = datetime(9999, 12, 31, tzinfo=UTC)
_KEY_BYTES: Final = 32


class _KeyRow(Protocol):
    @property
    def secret(self) -> str | None: ...


class KeyRows(Protocol):
    """``store.CeremonyStore``: where the sealed key is kept."""

    async def get_ceremony(self, ceremony_id: str) -> _KeyRow | None: ...

    async def open_ceremony_once(
        self,
        *,
        id: str,
        subject_id: str,
        purpose: str,
        now: datetime,
        expires_at: datetime,
        secret: str | None = None,
    ) -> _KeyRow: ...


async def load_risk_key(rows: KeyRows, keyring: Keyring, *, now: datetime) -> Secret[bytes]:
    """The risk key (created on the deployment's first start). Raises ``ServiceUnavailable``
    when it cannot be stored or opened: without it nothing could be recognised."""
    row = await rows.get_ceremony(RISK_KEY_ID)
    if row is None:
        sealed = keyring.encrypt(secrets.token_bytes(_KEY_BYTES), aad=_AAD)
        # Another node may create it first: then its key is the one read back.
        row = await rows.open_ceremony_once(
            id=RISK_KEY_ID,
            subject_id="",
            purpose=CeremonyPurpose.RISK_KEY,
            now=now,
            expires_at=_NEVER,
            secret=sealed,
        )
    if row.secret is None:
        raise ServiceUnavailable("the risk key could not be stored")
    try:
        return Secret(await keyring.adecrypt(row.secret, aad=_AAD))
    except DecryptionError:
        raise ServiceUnavailable("the risk key cannot be read with this keyring") from None
