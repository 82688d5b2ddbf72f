"""The keyring's keys as values: ES256 signing keys, AES-256-GCM data keys, and one consistent
set of them (:class:`KeySet`); how a new key is made; and each key's JSON form (the *entry*),
which is what the store keeps, sealed by the master key (``crypto.keystore``), and what the
file keyring of earlier versions held (``crypto.keyfile``).

Errors never quote an entry: a damaged one could put key material into a log line.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey

from piigate.crypto.secret import Secret
from piigate.errors import ServiceUnavailable

__all__ = [
    "SIGNING_ALG",
    "DataKey",
    "Key",
    "KeyKind",
    "KeySet",
    "KeyringError",
    "SigningKey",
    "b64decode",
    "b64encode",
    "entry_of",
    "fresh_key_set",
    "key_of_entry",
    "new_data_key",
    "new_signing_key",
]

SIGNING_ALG = "ES256"
SIGNING_CURVE = "P-256"
DATA_ALG = "A256GCM"
DATA_KEY_BYTES = 32  # AES-256


class KeyringError(ServiceUnavailable):
    """The keyring cannot be opened, read or written: the node cannot sign or decrypt (503; at
    start-up, one line and no start). Messages never include key material."""

    code = "keyring_unavailable"
    title = "Keys unavailable"


class KeyKind(StrEnum):
    SIGNING = "signing"
    DATA = "data"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    created_at: datetime
    private: ECKey = field(repr=False)
    public: ECKey = field(repr=False)

    @property
    def kind(self) -> KeyKind:
        return KeyKind.SIGNING


@dataclass(frozen=True, slots=True)
class DataKey:
    kid: str
    created_at: datetime
    secret: Secret[bytes] = field(repr=False)
    aead: AESGCM = field(repr=False)

    @property
    def kind(self) -> KeyKind:
        return KeyKind.DATA


Key = SigningKey | DataKey


@dataclass(frozen=True, slots=True)
class KeySet:
    """One consistent snapshot of the keyring; replaced whole, never mutated."""

    signing_kid: str
    data_kid: str
    signing: Mapping[str, SigningKey] = field(repr=False)
    data: Mapping[str, DataKey] = field(repr=False)

    def __contains__(self, kid: object) -> bool:
        return kid in self.signing or kid in self.data

    def get(self, kid: str) -> Key | None:
        return self.signing.get(kid) or self.data.get(kid)


# -- new keys ------------------------------------------------------------------------------------


def _new_kid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _signing_entry(kid: str, created_at: datetime, private: ECKey) -> SigningKey:
    public = ECKey.import_key(dict(private.as_dict(private=False)))
    return SigningKey(kid=kid, created_at=created_at, private=private, public=public)


def _data_entry(kid: str, created_at: datetime, raw: bytes) -> DataKey:
    return DataKey(kid=kid, created_at=created_at, secret=Secret(raw), aead=AESGCM(raw))


def new_signing_key(now: datetime) -> SigningKey:
    private = ECKey.generate_key(SIGNING_CURVE, private=True)
    return _signing_entry(_new_kid("sig"), now, private)


def new_data_key(now: datetime) -> DataKey:
    return _data_entry(_new_kid("dek"), now, secrets.token_bytes(DATA_KEY_BYTES))


def fresh_key_set(now: datetime) -> KeySet:
    signing = new_signing_key(now)
    data = new_data_key(now)
    return KeySet(
        signing_kid=signing.kid,
        data_kid=data.kid,
        signing={signing.kid: signing},
        data={data.kid: data},
    )


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes | None:
    # Unpadded base64url only (RFC 7515 §2 style), as b64encode writes it.
    if "=" in text:
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None


# -- one key's JSON form -------------------------------------------------------------------------


def entry_of(key: Key) -> dict[str, Any]:
    """The key as JSON: kid, creation time, algorithm and the key material itself."""
    common = {"kid": key.kid, "created_at": key.created_at.isoformat()}
    if isinstance(key, SigningKey):
        return {**common, "alg": SIGNING_ALG, "jwk": dict(key.private.as_dict(private=True))}
    return {**common, "alg": DATA_ALG, "key": b64encode(key.secret.reveal())}


def key_of_entry(kind: KeyKind, item: Any) -> Key:
    """The key an entry holds; ``ValueError`` (or another exception of a parser, which the
    caller must not quote) when it is not a well-formed key of ``kind``."""
    if not isinstance(item, dict):
        raise ValueError("key entry is not an object")
    kid, created_at = _kid(item["kid"]), datetime.fromisoformat(item["created_at"])
    if kind is KeyKind.SIGNING:
        private = ECKey.import_key(item["jwk"])
        if item.get("alg") != SIGNING_ALG or private.curve_name != SIGNING_CURVE:
            raise ValueError("unsupported signing key")
        if not private.is_private:
            raise ValueError("signing key without private part")
        return _signing_entry(kid, created_at, private)
    raw = b64decode(item["key"]) if isinstance(item["key"], str) else None
    if item.get("alg") != DATA_ALG or raw is None or len(raw) != DATA_KEY_BYTES:
        raise ValueError("unsupported data key")
    return _data_entry(kid, created_at, raw)


def _kid(value: Any) -> str:
    # Kids never contain ".": ciphertext tokens are "v1.<kid>.<body>".
    if not isinstance(value, str) or not value or "." in value or len(value) > 64:
        raise ValueError("bad kid")
    return value
