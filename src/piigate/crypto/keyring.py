"""The keyring: signing keys for grant tokens and AES-256-GCM data keys for secrets at rest.

Keys live in ``<directory>/keyring.json`` (mode 0600, in a 0700 directory), written atomically.
Each key has a key id (``kid``) and a creation time. Rotation adds a new *current* key and keeps
the old ones, so tokens signed and values encrypted before a rotation stay readable; ``rewrap``
moves a ciphertext to the current data key.

Every change (first generation, rotation) happens under an exclusive ``flock`` on
``<directory>/keyring.lock`` and re-reads the file first, so two processes starting on the same
fresh directory end with the same keys, and concurrent rotations never drop a key. A process does
not notice keys added by another one until it calls :meth:`Keyring.refresh`.

Ciphertext tokens look like ``v1.<kid>.<base64url(nonce || ciphertext || tag)>``.
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
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey

from piigate.clock import Clock, SystemClock
from piigate.crypto.secret import Secret

__all__ = ["DecryptionError", "KeyInfo", "KeyKind", "Keyring", "KeyringError"]

FILE_NAME = "keyring.json"
LOCK_NAME = "keyring.lock"
FORMAT_VERSION = 1
SIGNING_ALG = "ES256"
SIGNING_CURVE = "P-256"
CIPHERTEXT_VERSION = "v1"
DATA_KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # NIST SP 800-38D §8.2: 96-bit random nonces
TAG_BYTES = 16


class KeyringError(Exception):
    """The keyring cannot be opened, read or written. Messages never include key material."""


class DecryptionError(Exception):
    """A ciphertext token could not be decrypted. Deliberately vague about why."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class KeyKind(StrEnum):
    SIGNING = "signing"
    DATA = "data"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key (CLI listings, audit events): never the key itself."""

    kind: KeyKind
    kid: str
    created_at: datetime
    current: bool


@dataclass(frozen=True, slots=True)
class _SigningKey:
    kid: str
    created_at: datetime
    private: ECKey = field(repr=False)
    public: ECKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class _DataKey:
    kid: str
    created_at: datetime
    secret: Secret[bytes] = field(repr=False)
    aead: AESGCM = field(repr=False)


@dataclass(frozen=True, slots=True)
class _State:
    """One consistent snapshot of the keyring; replaced whole, never mutated."""

    signing_kid: str
    data_kid: str
    signing: dict[str, _SigningKey] = field(repr=False)
    data: dict[str, _DataKey] = field(repr=False)


class Keyring:
    """Signing and data keys, loaded from (and persisted to) one directory."""

    def __init__(self, directory: Path, state: _State, clock: Clock) -> None:
        self._directory = directory
        self._state = state
        self._clock = clock

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, *, clock: Clock | None = None) -> Keyring:
        """Load the keyring in ``directory``, generating it (and the directory) on first start."""
        clock = clock or SystemClock()
        directory = Path(directory)
        _ensure_directory(directory)
        with _locked(directory):
            state = _read(directory)
            if state is None:
                state = _fresh_state(clock.now())
                _write(directory, state)
        return cls(directory, state, clock)

    def refresh(self) -> None:
        """Re-read the file, picking up keys another process added."""
        with _locked(self._directory):
            state = _read(self._directory)
        if state is None:
            raise KeyringError(f"keyring file is missing from {self._directory}")
        self._state = state

    @property
    def directory(self) -> Path:
        return self._directory

    # -- signing ---------------------------------------------------------------------------------

    @property
    def signing_kid(self) -> str:
        return self._state.signing_kid

    def sign_key(self) -> ECKey:
        """The current private signing key (ES256)."""
        return self._state.signing[self._state.signing_kid].private

    def verify_key(self, kid: str) -> ECKey | None:
        """The public key for ``kid`` (current or retired), or None when unknown."""
        entry = self._state.signing.get(kid)
        return entry.public if entry is not None else None

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public signing keys as a JWK Set (RFC 7517 §5), current key first."""
        state = self._state
        ordered = sorted(state.signing.values(), key=lambda k: k.kid != state.signing_kid)
        return {
            "keys": [
                {
                    **dict(k.public.as_dict(private=False)),
                    "kid": k.kid,
                    "alg": SIGNING_ALG,
                    "use": "sig",
                }
                for k in ordered
            ]
        }

    def rotate_signing_key(self) -> str:
        """Make a new signing key current; older ones stay available for verification."""
        return self._rotate(KeyKind.SIGNING)

    # -- data keys -------------------------------------------------------------------------------

    @property
    def data_kid(self) -> str:
        return self._state.data_kid

    def rotate_data_key(self) -> str:
        """Make a new data key current; older ones stay available for decryption."""
        return self._rotate(KeyKind.DATA)

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> str:
        """Encrypt under the current data key. ``aad`` must be given again to decrypt."""
        key = self._state.data[self._state.data_kid]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, plaintext, _associated_data(key.kid, aad))
        return f"{CIPHERTEXT_VERSION}.{key.kid}.{_b64encode(nonce + sealed)}"

    def decrypt(self, token: str, *, aad: bytes) -> bytes:
        """Decrypt a token from :meth:`encrypt` (under any known data key)."""
        try:
            version, kid, body = token.split(".")
        except (AttributeError, ValueError):
            raise DecryptionError() from None
        key = self._state.data.get(kid)
        if version != CIPHERTEXT_VERSION or key is None:
            raise DecryptionError()
        raw = _b64decode(body)
        if raw is None or len(raw) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError()
        try:
            return key.aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(kid, aad)
            )
        except InvalidTag:
            raise DecryptionError() from None

    def rewrap(self, token: str, *, aad: bytes) -> str:
        """Re-encrypt a token under the current data key (after :meth:`rotate_data_key`)."""
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)

    # -- listing ---------------------------------------------------------------------------------

    def list_keys(self) -> tuple[KeyInfo, ...]:
        state = self._state
        signing = [
            KeyInfo(KeyKind.SIGNING, k.kid, k.created_at, k.kid == state.signing_kid)
            for k in state.signing.values()
        ]
        data = [
            KeyInfo(KeyKind.DATA, k.kid, k.created_at, k.kid == state.data_kid)
            for k in state.data.values()
        ]
        return (*signing, *data)

    def __repr__(self) -> str:
        return (
            f"Keyring(directory={str(self._directory)!r}, signing_kid={self.signing_kid!r}, "
            f"data_kid={self.data_kid!r})"
        )

    __str__ = __repr__

    # -- internals -------------------------------------------------------------------------------

    def _rotate(self, kind: KeyKind) -> str:
        with _locked(self._directory):
            # Start from the file, not from memory: another process may have rotated meanwhile.
            state = _read(self._directory)
            if state is None:
                raise KeyringError(f"keyring file is missing from {self._directory}")
            now = self._clock.now()
            if kind is KeyKind.SIGNING:
                new_signing = _new_signing_key(now)
                state = _State(
                    signing_kid=new_signing.kid,
                    data_kid=state.data_kid,
                    signing={**state.signing, new_signing.kid: new_signing},
                    data=state.data,
                )
                kid = new_signing.kid
            else:
                new_data = _new_data_key(now)
                state = _State(
                    signing_kid=state.signing_kid,
                    data_kid=new_data.kid,
                    signing=state.signing,
                    data={**state.data, new_data.kid: new_data},
                )
                kid = new_data.kid
            _write(self._directory, state)
        self._state = state
        return kid


# -- key generation ------------------------------------------------------------------------------


def _new_kid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _signing_entry(kid: str, created_at: datetime, private: ECKey) -> _SigningKey:
    public = ECKey.import_key(dict(private.as_dict(private=False)))
    return _SigningKey(kid=kid, created_at=created_at, private=private, public=public)


def _data_entry(kid: str, created_at: datetime, raw: bytes) -> _DataKey:
    return _DataKey(kid=kid, created_at=created_at, secret=Secret(raw), aead=AESGCM(raw))


def _new_signing_key(now: datetime) -> _SigningKey:
    private = ECKey.generate_key(SIGNING_CURVE, private=True)
    return _signing_entry(_new_kid("sig"), now, private)


def _new_data_key(now: datetime) -> _DataKey:
    return _data_entry(_new_kid("dek"), now, secrets.token_bytes(DATA_KEY_BYTES))


def _fresh_state(now: datetime) -> _State:
    signing = _new_signing_key(now)
    data = _new_data_key(now)
    return _State(
        signing_kid=signing.kid,
        data_kid=data.kid,
        signing={signing.kid: signing},
        data={data.kid: data},
    )


def _associated_data(kid: str, aad: bytes) -> bytes:
    # Bind the token header too, so a ciphertext cannot be replayed under another version or kid.
    # Unambiguous because kids never contain ".".
    return f"{CIPHERTEXT_VERSION}.{kid}.".encode() + aad


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    # Unpadded base64url only (RFC 7515 §2 style), as _b64encode writes it.
    if "=" in text:
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None


# -- persistence ---------------------------------------------------------------------------------


def _ensure_directory(directory: Path) -> None:
    try:
        if not directory.is_dir():
            directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
                # mkdir's mode is filtered by the umask; make sure it is exactly 0700.
                os.chmod(directory, 0o700)
    except OSError as err:
        raise KeyringError(f"cannot create keyring directory {directory}: {err.strerror}") from None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise KeyringError(f"cannot open keyring lock in {directory}: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _read(directory: Path) -> _State | None:
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


def _write(directory: Path, state: _State) -> None:
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


def _encode(state: _State) -> dict[str, Any]:
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
                    "key": _b64encode(k.secret.reveal()),
                }
                for k in state.data.values()
            ],
        },
    }


def _decode(doc: Any) -> _State:
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError("unsupported keyring format")
    signing: dict[str, _SigningKey] = {}
    for item in doc["signing"]["keys"]:
        kid, created_at = _kid(item["kid"]), datetime.fromisoformat(item["created_at"])
        private = ECKey.import_key(item["jwk"])
        if item.get("alg") != SIGNING_ALG or private.curve_name != SIGNING_CURVE:
            raise ValueError("unsupported signing key")
        if not private.is_private:
            raise ValueError("signing key without private part")
        signing[kid] = _signing_entry(kid, created_at, private)
    data: dict[str, _DataKey] = {}
    for item in doc["data"]["keys"]:
        kid, created_at = _kid(item["kid"]), datetime.fromisoformat(item["created_at"])
        raw = _b64decode(item["key"]) if isinstance(item["key"], str) else None
        if item.get("alg") != "A256GCM" or raw is None or len(raw) != DATA_KEY_BYTES:
            raise ValueError("unsupported data key")
        data[kid] = _data_entry(kid, created_at, raw)
    signing_kid, data_kid = doc["signing"]["current"], doc["data"]["current"]
    if signing_kid not in signing or data_kid not in data:
        raise ValueError("current key missing")
    return _State(signing_kid=signing_kid, data_kid=data_kid, signing=signing, data=data)


def _kid(value: Any) -> str:
    if not isinstance(value, str) or not value or "." in value:
        raise ValueError("bad kid")
    return value
