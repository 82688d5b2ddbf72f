"""The file keyring of earlier versions, ``DATA_DIR/keyring/keyring.json``: read once at start so
that its keys move into the store (``crypto.keyring.open_keyring``) and nothing encrypted or
signed under them is lost. piigate no longer writes this file; :func:`encode_key_file` is its
format, for tools and tests that need one.

Errors never quote the file: a damaged file could put key material into a log line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from piigate.crypto.keyset import (
    DataKey,
    KeyKind,
    KeyringError,
    KeySet,
    SigningKey,
    entry_of,
    key_of_entry,
)

__all__ = ["FILE_NAME", "encode_key_file", "read_key_file"]

FILE_NAME = "keyring.json"
FORMAT_VERSION = 1


def read_key_file(directory: Path) -> KeySet | None:
    """The keys of ``directory/keyring.json``; None when there is no such file."""
    path = directory / FILE_NAME
    try:
        text = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise KeyringError(f"cannot read keyring file {path}: {err.strerror}") from None
    try:
        return _decode(json.loads(text))
    except Exception:
        # Anything can go wrong in a damaged file (json, base64, joserfc's own JWK errors...).
        # `from None`: the original error might quote part of the file, i.e. key material.
        raise KeyringError(f"keyring file {path} is corrupt or has an unknown format") from None


def encode_key_file(state: KeySet) -> bytes:
    """``state`` in the file's format."""
    doc = {
        "version": FORMAT_VERSION,
        "signing": {
            "current": state.signing_kid,
            "keys": [entry_of(k) for k in state.signing.values()],
        },
        "data": {"current": state.data_kid, "keys": [entry_of(k) for k in state.data.values()]},
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _decode(doc: Any) -> KeySet:
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError("unsupported keyring format")
    signing: dict[str, SigningKey] = {}
    for item in doc["signing"]["keys"]:
        key = key_of_entry(KeyKind.SIGNING, item)
        if not isinstance(key, SigningKey):
            raise ValueError("not a signing key")
        signing[key.kid] = key
    data: dict[str, DataKey] = {}
    for item in doc["data"]["keys"]:
        key = key_of_entry(KeyKind.DATA, item)
        if not isinstance(key, DataKey):
            raise ValueError("not a data key")
        data[key.kid] = key
    signing_kid, data_kid = doc["signing"]["current"], doc["data"]["current"]
    if signing_kid not in signing or data_kid not in data:
        raise ValueError("current key missing")
    return KeySet(signing_kid=signing_kid, data_kid=data_kid, signing=signing, data=data)
