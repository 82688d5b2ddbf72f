"""The keyring: signing keys for grant tokens and AES-256-GCM data keys for secrets at rest, one
set for the whole deployment.

The keys live in the store, each sealed by the master key (``crypto.keystore``,
``crypto.masterkey``); every node holds them in memory, and signs, verifies, encrypts and
decrypts without touching the store. Each key has a key id (``kid``) and a creation time.
Rotation adds a new *current* key and keeps the old ones, so tokens signed and values encrypted
before a rotation stay readable; ``rewrap`` moves a ciphertext to the current data key.

Another node's rotation reaches this one when it meets a kid it does not know (a grant's, a
ciphertext's: :meth:`Keyring.learn`, :meth:`Keyring.adecrypt`) and on the periodic
:meth:`Keyring.refresh`. Reloads on unknown kids are at most one per ``reload_interval``
seconds, so forged kids cannot hammer the store.

Ciphertext tokens look like ``v1.<kid>.<base64url(nonce || ciphertext || tag)>``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey

from piigate.clock import Clock, SystemClock
from piigate.crypto.keyfile import read_key_file
from piigate.crypto.keyset import (
    SIGNING_ALG,
    Key,
    KeyKind,
    KeyringError,
    KeySet,
    SigningKey,
    b64decode,
    b64encode,
    fresh_key_set,
    new_data_key,
    new_signing_key,
)
from piigate.crypto.keystore import KeySource, SealedKeys
from piigate.crypto.masterkey import MASTER_KEY_ENV, MasterKeySpec

__all__ = [
    "DecryptionError",
    "KeyInfo",
    "KeyKind",
    "Keyring",
    "KeyringError",
    "OpenedKeyring",
    "UnknownKey",
    "open_keyring",
]

log = structlog.get_logger("piigate.keyring")

CIPHERTEXT_VERSION = "v1"
NONCE_BYTES = 12  # NIST SP 800-38D §8.2: 96-bit random nonces
TAG_BYTES = 16
RELOAD_INTERVAL = 1.0  # seconds between reloads caused by unknown kids


class DecryptionError(Exception):
    """A ciphertext token could not be decrypted. Deliberately vague about why."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class UnknownKey(DecryptionError):
    """The token names a data key this node does not hold (yet)."""

    def __init__(self, kid: str) -> None:
        super().__init__()
        self.kid = kid


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key (CLI listings, audit events): never the key itself."""

    kind: KeyKind
    kid: str
    created_at: datetime
    current: bool


class Keyring:
    """The deployment's keys in memory; ``sealed`` is where they are kept (None: in memory only,
    as :meth:`ephemeral` makes them)."""

    def __init__(
        self,
        state: KeySet,
        *,
        sealed: SealedKeys | None = None,
        clock: Clock | None = None,
        reload_interval: float = RELOAD_INTERVAL,
    ) -> None:
        self._state = state
        self._sealed = sealed
        self._clock = clock or SystemClock()
        self._reload_interval = reload_interval
        self._next_reload = 0.0
        self._reloading: asyncio.Future[None] | None = None
        # Why the store's keys cannot be read now (for /readyz); None while they can.
        self.problem: str | None = None

    @classmethod
    def ephemeral(cls, *, clock: Clock | None = None) -> Keyring:
        """Fresh keys held in memory only (tests, tools): rotations stay in this object."""
        clock = clock or SystemClock()
        return cls(fresh_key_set(clock.now()), clock=clock)

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
        if entry is None:
            self._reload_soon()
            return None
        return entry.public

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

    async def rotate_signing_key(self) -> str:
        """Make a new signing key current; older ones stay available for verification."""
        return await self._rotate(new_signing_key(self._clock.now()))

    # -- data keys -------------------------------------------------------------------------------

    @property
    def data_kid(self) -> str:
        return self._state.data_kid

    async def rotate_data_key(self) -> str:
        """Make a new data key current; older ones stay available for decryption."""
        return await self._rotate(new_data_key(self._clock.now()))

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> str:
        """Encrypt under the current data key. ``aad`` must be given again to decrypt."""
        key = self._state.data[self._state.data_kid]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, plaintext, _associated_data(key.kid, aad))
        return f"{CIPHERTEXT_VERSION}.{key.kid}.{b64encode(nonce + sealed)}"

    def decrypt(self, token: str, *, aad: bytes) -> bytes:
        """Decrypt a token from :meth:`encrypt` (under any data key this node holds);
        :class:`UnknownKey` when its key is not one of them (see :meth:`adecrypt`)."""
        try:
            version, kid, body = token.split(".")
        except (AttributeError, ValueError):
            raise DecryptionError() from None
        if version != CIPHERTEXT_VERSION:
            raise DecryptionError()
        key = self._state.data.get(kid)
        if key is None:
            self._reload_soon()
            raise UnknownKey(kid)
        raw = b64decode(body)
        if raw is None or len(raw) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError()
        try:
            return key.aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(kid, aad)
            )
        except InvalidTag:
            raise DecryptionError() from None

    async def adecrypt(self, token: str, *, aad: bytes) -> bytes:
        """:meth:`decrypt`, learning first a key another node added since the last reload."""
        try:
            return self.decrypt(token, aad=aad)
        except UnknownKey as unknown:
            if not await self.learn(unknown.kid):
                raise
        return self.decrypt(token, aad=aad)

    def rewrap(self, token: str, *, aad: bytes) -> str:
        """Re-encrypt a token under the current data key (after :meth:`rotate_data_key`)."""
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)

    def derived_key(self, purpose: bytes, kid: str | None = None) -> tuple[str, bytes] | None:
        """A 32-byte key for ``purpose`` (an HMAC key, say) derived from the data key ``kid``
        (the current one when None) with HKDF-SHA256 (RFC 5869), and that kid; None for a kid
        this node does not hold. Each purpose gets an independent key, never the AES key."""
        key = self._state.data.get(kid or self._state.data_kid)
        if key is None:
            if kid is not None:
                self._reload_soon()
            return None
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"piigate:" + purpose)
        return key.kid, hkdf.derive(key.secret.reveal())

    # -- keeping up with other nodes -------------------------------------------------------------

    async def learn(self, kid: str) -> bool:
        """True when ``kid`` names a key this node holds, after reloading the store's keys if it
        did not (at most once per ``reload_interval``; concurrent callers share one reload)."""
        if kid in self._state:
            return True
        reloading = self._reload_soon()
        if reloading is None:
            return False
        await asyncio.shield(reloading)
        return kid in self._state

    def _reload_soon(self) -> asyncio.Future[None] | None:
        """The reload under way, or a new one when the last began ``reload_interval`` ago or
        more; None when neither (or no store, or no event loop: a synchronous caller's unknown
        kid is learned in the background, for its next request)."""
        if self._sealed is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        reloading = self._reloading
        if reloading is not None and not reloading.done() and reloading.get_loop() is loop:
            return reloading
        now = time.monotonic()
        if now < self._next_reload:
            return None
        self._next_reload = now + self._reload_interval
        self._reloading = asyncio.ensure_future(self.refresh())
        return self._reloading

    async def refresh(self) -> None:
        """Reload the store's keys. Keys that cannot be opened keep the ones held and set
        :attr:`problem`; a store that cannot be reached changes nothing (it reports itself)."""
        if self._sealed is None:
            return
        try:
            self._state = await self._sealed.load(known=self._state)
        except KeyringError as err:
            if self.problem != err.detail:
                log.error("keyring_unreadable", reason=err.detail)
            self.problem = err.detail
        except Exception as err:
            log.warning("keyring_reload_failed", error=type(err).__name__)
        else:
            self.problem = None

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
        return f"Keyring(signing_kid={self.signing_kid!r}, data_kid={self.data_kid!r})"

    __str__ = __repr__

    # -- internals -------------------------------------------------------------------------------

    async def _rotate(self, key: Key) -> str:
        if self._sealed is None:
            state = self._state
            if isinstance(key, SigningKey):
                signing = {**state.signing, key.kid: key}
                self._state = KeySet(key.kid, state.data_kid, signing, state.data)
            else:
                data = {**state.data, key.kid: key}
                self._state = KeySet(state.signing_kid, key.kid, state.signing, data)
            return key.kid
        await self._sealed.add([key], active=True)
        # Strict: a node that cannot read the keys it rotates must not pretend it did.
        self._state = await self._sealed.load(known=self._state)
        return key.kid


def _associated_data(kid: str, aad: bytes) -> bytes:
    # Bind the token header too, so a ciphertext cannot be replayed under another version or kid.
    # Unambiguous because kids never contain ".".
    return f"{CIPHERTEXT_VERSION}.{kid}.".encode() + aad


# -- opening -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedKeyring:
    keyring: Keyring
    created: tuple[str, ...]  # kids generated now, for a store that had no keys
    imported: tuple[str, ...]  # kids moved in now from this node's file keyring


async def open_keyring(
    source: KeySource, master: MasterKeySpec, *, legacy_dir: Path | None, clock: Clock
) -> OpenedKeyring:
    """The deployment's keyring from ``source``, opened with ``master``: created on first start
    (with the default master key file when none is configured), and the keys of an earlier
    version's file keyring in ``legacy_dir`` added (once; current only in a store without keys).
    ``KeyringError`` with one clear line when the store's keys cannot be opened."""
    rows = await source.keyring_keys()
    key = master.load(create=not rows)
    if key is None:
        raise KeyringError(
            f"the store holds keys but this node has no master key: set {MASTER_KEY_ENV} or "
            f"PIIGATE_MASTER_KEY_FILE to the deployment's master key (the first node keeps it "
            f"in {master.default_file})"
        )
    sealed = SealedKeys(source, key)
    state = sealed.unseal(rows) if rows else None  # refuse a wrong master key before any write
    present = {row.kid for row in rows}
    legacy = read_key_file(legacy_dir) if legacy_dir is not None else None
    imported: list[Key] = []
    if legacy is not None:
        imported = [k for k in _in_order(legacy) if k.kid not in present]
        await sealed.add(imported, active=not rows)
    created: list[Key] = []
    if not rows and legacy is None:
        fresh = fresh_key_set(clock.now())
        created = list(_in_order(fresh))
        await sealed.add(created, active=True)
    if state is None or imported:
        state = await sealed.load(known=state)  # another node may have added its keys too
    keyring = Keyring(state, sealed=sealed, clock=clock)
    return OpenedKeyring(keyring, tuple(k.kid for k in created), tuple(k.kid for k in imported))


def _in_order(state: KeySet) -> list[Key]:
    """Every key of ``state``, each kind's current key after the others of its kind (the last
    active key added is the current one)."""
    signing = [k for k in state.signing.values() if k.kid != state.signing_kid]
    data = [k for k in state.data.values() if k.kid != state.data_kid]
    return [*signing, state.signing[state.signing_kid], *data, state.data[state.data_kid]]
