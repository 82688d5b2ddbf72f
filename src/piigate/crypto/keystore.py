"""The keyring as the store keeps it: one row per key, each sealed by the master key.

A row (:class:`StoredKey`) carries the key's id, kind, creation time, the id of the master key
that sealed it and the sealed key (AES-256-GCM over the key's JSON entry, the associated data
naming the kind and kid, so a row's key cannot be passed off as another's). Rows are only ever
added, in order: the *current* key of a kind is the last one added that is ``active``; older
ones stay, so whatever was signed or encrypted under them stays readable (the rotation
history). Keys moved in from a node's file keyring into a store that had keys already are added
inactive: readable, never current.

:class:`KeySource` is the port (``store.keyring.KeyringStore`` in SQL, :class:`MemoryKeySource`
here); :class:`SealedKeys` is that port seen through one master key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from piigate.crypto.keyset import (
    DataKey,
    Key,
    KeyKind,
    KeyringError,
    KeySet,
    SigningKey,
    entry_of,
    key_of_entry,
)
from piigate.crypto.masterkey import MasterKey

__all__ = ["KeySource", "MemoryKeySource", "SealedKeys", "StoredKey"]


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One key as the store holds it: sealed, never in the clear."""

    kid: str
    kind: KeyKind
    created_at: datetime
    active: bool  # may be the current key of its kind
    kek_id: str  # the master key that sealed it
    sealed: str = field(repr=False)


class KeySource(Protocol):
    """Where the deployment's keys are kept (``store.Store``)."""

    async def keyring_keys(self) -> Sequence[StoredKey]:
        """Every key, in the order they were added."""
        ...

    async def add_keyring_keys(self, keys: Sequence[StoredKey]) -> None:
        """Add ``keys`` in order, in one transaction, skipping a kid that is there already."""
        ...


class MemoryKeySource:
    """A :class:`KeySource` in memory (tests)."""

    def __init__(self) -> None:
        self.rows: list[StoredKey] = []

    async def keyring_keys(self) -> Sequence[StoredKey]:
        return list(self.rows)

    async def add_keyring_keys(self, keys: Sequence[StoredKey]) -> None:
        present = {row.kid for row in self.rows}
        self.rows += [key for key in keys if key.kid not in present]


class SealedKeys:
    """The keys of a :class:`KeySource`, sealed and opened with one master key."""

    def __init__(self, source: KeySource, master: MasterKey) -> None:
        self.source = source
        self.master = master
        # The sealed text each kid was opened from: a row that still reads the same is not
        # opened again, one that changed is.
        self._opened: dict[str, str] = {}

    async def load(self, known: KeySet | None = None) -> KeySet:
        """Every key of the source; those in ``known`` whose rows have not changed since they
        were opened are taken from it. ``KeyringError`` when any key cannot be opened (naming
        the master key that sealed it) or a kind has no current key."""
        return self.unseal(await self.source.keyring_keys(), known)

    async def add(self, keys: Iterable[Key], *, active: bool) -> None:
        rows = [
            StoredKey(
                kid=key.kid,
                kind=key.kind,
                created_at=key.created_at,
                active=active,
                kek_id=self.master.kek_id,
                sealed=self.master.seal(json.dumps(entry_of(key)).encode(), aad=_aad(key)),
            )
            for key in keys
        ]
        await self.source.add_keyring_keys(rows)

    def unseal(self, rows: Sequence[StoredKey], known: KeySet | None = None) -> KeySet:
        signing: dict[str, SigningKey] = {}
        data: dict[str, DataKey] = {}
        current: dict[KeyKind, str] = {}
        for row in rows:
            found = known.get(row.kid) if known is not None else None
            unchanged = self._opened.get(row.kid) == row.sealed
            key = found if found is not None and unchanged else self._open(row)
            if isinstance(key, SigningKey):
                signing[key.kid] = key
            else:
                data[key.kid] = key
            if row.active:
                current[key.kind] = key.kid
        if KeyKind.SIGNING not in current or KeyKind.DATA not in current:
            raise KeyringError("the store's keyring has no current signing or data key")
        return KeySet(
            signing_kid=current[KeyKind.SIGNING],
            data_kid=current[KeyKind.DATA],
            signing=signing,
            data=data,
        )

    def _open(self, row: StoredKey) -> Key:
        master = self.master
        if row.kek_id != master.kek_id:
            raise KeyringError(
                f"the store's keys are sealed by master key {row.kek_id}, not by this node's "
                f"({master.kek_id}, from {master.source}): give every node the deployment's "
                "master key"
            )
        opened = master.open(row.sealed, aad=_aad(row))
        try:
            if opened is None:
                raise ValueError("not opened")
            key = key_of_entry(KeyKind(row.kind), json.loads(opened))
            if key.kid != row.kid or key.kind != row.kind:
                raise ValueError("kid mismatch")
        except Exception:
            # `from None`: a parser's message might quote the key material.
            raise KeyringError(
                f"the store's key {row.kid} cannot be opened with master key {master.kek_id}"
            ) from None
        self._opened[row.kid] = row.sealed
        return key


def _aad(key: Key | StoredKey) -> bytes:
    return f"piigate-keyring:{key.kind}:{key.kid}".encode()
