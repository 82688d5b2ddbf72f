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

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from joserfc.jwk import ECKey

from piigate.clock import Clock, SystemClock
from piigate.crypto.keyfile import (
    SIGNING_ALG,
    KeyringError,
    KeySet,
    b64decode,
    b64encode,
    ensure_directory,
    fresh_key_set,
    locked,
    new_data_key,
    new_signing_key,
    read_key_set,
    write_key_set,
)

__all__ = ["DecryptionError", "KeyInfo", "KeyKind", "Keyring", "KeyringError"]

CIPHERTEXT_VERSION = "v1"
NONCE_BYTES = 12  # NIST SP 800-38D §8.2: 96-bit random nonces
TAG_BYTES = 16


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


class Keyring:
    """Signing and data keys, loaded from (and persisted to) one directory."""

    def __init__(self, directory: Path, state: KeySet, clock: Clock) -> None:
        self._directory = directory
        self._state = state
        self._clock = clock

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, *, clock: Clock | None = None) -> Keyring:
        """Load the keyring in ``directory``, generating it (and the directory) on first start."""
        clock = clock or SystemClock()
        directory = Path(directory)
        ensure_directory(directory)
        with locked(directory):
            state = read_key_set(directory)
            if state is None:
                state = fresh_key_set(clock.now())
                write_key_set(directory, state)
        return cls(directory, state, clock)

    def refresh(self) -> None:
        """Re-read the file, picking up keys another process added."""
        with locked(self._directory):
            state = read_key_set(self._directory)
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
        return f"{CIPHERTEXT_VERSION}.{key.kid}.{b64encode(nonce + sealed)}"

    def decrypt(self, token: str, *, aad: bytes) -> bytes:
        """Decrypt a token from :meth:`encrypt` (under any known data key)."""
        try:
            version, kid, body = token.split(".")
        except (AttributeError, ValueError):
            raise DecryptionError() from None
        key = self._state.data.get(kid)
        if version != CIPHERTEXT_VERSION or key is None:
            raise DecryptionError()
        raw = b64decode(body)
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
        with locked(self._directory):
            # Start from the file, not from memory: another process may have rotated meanwhile.
            state = read_key_set(self._directory)
            if state is None:
                raise KeyringError(f"keyring file is missing from {self._directory}")
            now = self._clock.now()
            if kind is KeyKind.SIGNING:
                new_signing = new_signing_key(now)
                state = KeySet(
                    signing_kid=new_signing.kid,
                    data_kid=state.data_kid,
                    signing={**state.signing, new_signing.kid: new_signing},
                    data=state.data,
                )
                kid = new_signing.kid
            else:
                new_data = new_data_key(now)
                state = KeySet(
                    signing_kid=state.signing_kid,
                    data_kid=new_data.kid,
                    signing=state.signing,
                    data={**state.data, new_data.kid: new_data},
                )
                kid = new_data.kid
            write_key_set(self._directory, state)
        self._state = state
        return kid


def _associated_data(kid: str, aad: bytes) -> bytes:
    # Bind the token header too, so a ciphertext cannot be replayed under another version or kid.
    # Unambiguous because kids never contain ".".
    return f"{CIPHERTEXT_VERSION}.{kid}.".encode() + aad
