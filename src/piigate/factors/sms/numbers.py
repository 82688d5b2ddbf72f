"""A keyed digest of a phone number: how rate limits count sends per number without ever
storing or keying a counter by the number itself.

``HMAC-SHA256(key, e164)``, where the key is 32 random bytes shared by every node through the
store: one ``ceremonies`` row (purpose ``sms_number_key``, never expiring) whose ``secret`` is the
key's keyring ciphertext. The first node to need it creates it; a node that loses that insert
race reads the winner's. A plain hash would not do: the space of phone numbers is small enough
to enumerate, so an unkeyed digest in a counter key is the number in all but name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.errors import ServiceUnavailable
from piigate.factors import CeremonyPurpose
from piigate.factors.sms.phone import PhoneNumber
from piigate.store.ceremonies import CeremonyStore

__all__ = ["NUMBER_KEY_ID", "NumberDigests"]

NUMBER_KEY_ID = "cer_sms_number_key"
_AAD = b"sms:number-key"
_NEVER = datetime(9999, 12, 31, tzinfo=UTC)
_KEY_BYTES = 32
_DIGEST_CHARS = 32  # 128 bits: ample for a counter key


class NumberDigests:
    def __init__(self, store: CeremonyStore, keyring: Keyring, clock: Clock) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._key: Secret[bytes] | None = None

    async def digest(self, phone: PhoneNumber) -> str:
        """The number's keyed digest (hex): equal numbers, equal digests, on every node."""
        key = self._key or await self._load()
        mac = hmac.new(key.reveal(), phone.e164.encode("ascii"), hashlib.sha256)
        return mac.hexdigest()[:_DIGEST_CHARS]

    async def _load(self) -> Secret[bytes]:
        row = await self._store.get_ceremony(NUMBER_KEY_ID)
        if row is None:
            now = self._clock.now()
            sealed = self._keyring.encrypt(secrets.token_bytes(_KEY_BYTES), aad=_AAD)
            # Another node may create it first: then its key is the one read back.
            row = await self._store.open_ceremony_once(
                id=NUMBER_KEY_ID,
                subject_id="",
                purpose=CeremonyPurpose.SMS_NUMBER_KEY,
                now=now,
                expires_at=_NEVER,
                secret=sealed,
            )
        if row.secret is None:
            raise ServiceUnavailable("the SMS number key could not be stored")
        try:
            self._key = Secret(await self._keyring.adecrypt(row.secret, aad=_AAD))
        except DecryptionError:
            # Fail closed: without the shared key, per-number limits could not be counted.
            raise ServiceUnavailable(
                "the SMS number key cannot be read with this keyring"
            ) from None
        return self._key
