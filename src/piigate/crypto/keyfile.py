"""The keyring's keys and the file that holds them.

Keys live in ``<directory>/keyring.json`` (mode 0600, in a 0700 directory), written atomically
(temporary file, fsync, rename, fsync of the directory). Every change happens under an exclusive
``flock`` on ``<directory>/keyring.lock``; the caller re-reads the file under that lock before it
changes anything, so concurrent processes never drop each other's keys. Errors never quote the
file: a damaged file could put key material into a log line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey

from piigate.crypto.secret import Secret
from piigate.files import private_directory

__all__ = [
    "SIGNING_ALG",
    "DataKey",
    "KeySet",
    "KeyringError",
    "SigningKey",
    "b64decode",
    "b64encode",
    "ensure_directory",
    "fresh_key_set",
    "locked",
    "new_data_key",
    "new_signing_key",
    "read_key_set",
    "write_key_set",
]

FILE_NAME = "keyring.json"
LOCK_NAME = "keyring.lock"
FORMAT_VERSION = 1
SIGNING_ALG = "ES256"
SIGNING_CURVE = "P-256"
DATA_KEY_BYTES = 32  # AES-256


class KeyringError(Exception):
    """The keyring cannot be opened, read or written. Messages never include key material."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    created_at: datetime
    private: ECKey = field(repr=False)
    public: ECKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class DataKey:
    kid: str
    created_at: datetime
    secret: Secret[bytes] = field(repr=False)
    aead: AESGCM = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeySet:
    """One consistent snapshot of the keyring; replaced whole, never mutated."""

    signing_kid: str
    data_kid: str
    signing: dict[str, SigningKey] = field(repr=False)
    data: dict[str, DataKey] = field(repr=False)


# -- key generation ------------------------------------------------------------------------------


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


# -- persistence ---------------------------------------------------------------------------------


def ensure_directory(directory: Path) -> None:
    try:
        private_directory(directory)
    except OSError as err:
        raise KeyringError(f"cannot create keyring directory {directory}: {err.strerror}") from None


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise KeyringError(f"cannot open keyring lock in {directory}: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def read_key_set(directory: Path) -> KeySet | None:
    path = directory / FILE_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise KeyringError(f"cannot read keyring file {path}: {err.strerror}") from None
    try:
        return _decode(json.loads(text))
    except Exception:
        # Anything can go wrong in a damaged file (json, base64, joserfc's own JWK errors...).
        # `from None`: the original error might quote part of the file, i.e. key material.
        raise KeyringError(f"keyring file {path} is corrupt or has an unknown format") from None


def write_key_set(directory: Path, state: KeySet) -> None:
    path = directory / FILE_NAME
    tmp = directory / f".{FILE_NAME}.{secrets.token_hex(6)}.tmp"
    payload = json.dumps(_encode(state), indent=2, sort_keys=True).encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise KeyringError(f"cannot write keyring file {path}: {err.strerror}") from None


def _encode(state: KeySet) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "signing": {
            "current": state.signing_kid,
            "keys": [
                {
                    "kid": k.kid,
                    "created_at": k.created_at.isoformat(),
                    "alg": SIGNING_ALG,
                    "jwk": dict(k.private.as_dict(private=True)),
                }
                for k in state.signing.values()
            ],
        },
        "data": {
            "current": state.data_kid,
            "keys": [
                {
                    "kid": k.kid,
                    "created_at": k.created_at.isoformat(),
                    "alg": "A256GCM",
                    "key": b64encode(k.secret.reveal()),
                }
                for k in state.data.values()
            ],
        },
    }


def _decode(doc: Any) -> KeySet:
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError("unsupported keyring format")
    signing: dict[str, SigningKey] = {}
    for item in doc["signing"]["keys"]:
        kid, created_at = _kid(item["kid"]), datetime.fromisoformat(item["created_at"])
        private = ECKey.import_key(item["jwk"])
        if item.get("alg") != SIGNING_ALG or private.curve_name != SIGNING_CURVE:
            raise ValueError("unsupported signing key")
        if not private.is_private:
            raise ValueError("signing key without private part")
        signing[kid] = _signing_entry(kid, created_at, private)
    data: dict[str, DataKey] = {}
    for item in doc["data"]["keys"]:
        kid, created_at = _kid(item["kid"]), datetime.fromisoformat(item["created_at"])
        raw = b64decode(item["key"]) if isinstance(item["key"], str) else None
        if item.get("alg") != "A256GCM" or raw is None or len(raw) != DATA_KEY_BYTES:
            raise ValueError("unsupported data key")
        data[kid] = _data_entry(kid, created_at, raw)
    signing_kid, data_kid = doc["signing"]["current"], doc["data"]["current"]
    if signing_kid not in signing or data_kid not in data:
        raise ValueError("current key missing")
    return KeySet(signing_kid=signing_kid, data_kid=data_kid, signing=signing, data=data)


def _kid(value: Any) -> str:
    if not isinstance(value, str) or not value or "." in value:
        raise ValueError("bad kid")
    return value
