"""The master key: the key-encryption key that seals each key of the keyring in the store.

Every node of a deployment needs the same one. It is 32 random bytes, written as base64 (RFC 4648
§4, e.g. ``openssl rand -base64 32``), taken from the first of:

1. ``PIIGATE_MASTER_KEY``, the base64 text itself;
2. a file holding that text: ``PIIGATE_MASTER_KEY_FILE``, or ``master_key_file`` in the
   ``service:`` section;
3. ``DATA_DIR/master.key``, which a node creates (mode 0600) on its first start against a store
   that holds no keys yet, so that one node on SQLite needs no configuration at all.

Its id (``mk-`` and 16 hex digits of an HMAC of the key) names it in messages and in the store's
rows, so a node given another deployment's key can say so; the id reveals nothing of the key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from piigate.crypto.keyset import KeyringError, b64decode, b64encode
from piigate.crypto.secret import Secret
from piigate.files import PRIVATE_FILE, private_directory

__all__ = ["DEFAULT_FILE_NAME", "MASTER_KEY_ENV", "MasterKey", "MasterKeySpec"]

MASTER_KEY_ENV = "PIIGATE_MASTER_KEY"
DEFAULT_FILE_NAME = "master.key"
MASTER_KEY_BYTES = 32
_SEALED_VERSION = "v1"
_NONCE_BYTES = 12
_ID_LABEL = b"piigate master key id"
_EXPECTED = "the base64 of 32 random bytes, e.g. from `openssl rand -base64 32`"


class MasterKey:
    """AES-256-GCM over each sealed key; ``kek_id`` names the key without revealing it."""

    __slots__ = ("_aead", "kek_id", "source")

    def __init__(self, raw: bytes, *, source: str) -> None:
        if len(raw) != MASTER_KEY_BYTES:
            raise KeyringError(f"{source} is not a master key: expected {_EXPECTED}")
        self._aead = AESGCM(raw)
        digest = hmac.new(raw, _ID_LABEL, hashlib.sha256).hexdigest()
        self.kek_id = f"mk-{digest[:16]}"
        self.source = source

    @classmethod
    def parse(cls, text: str, *, source: str) -> MasterKey:
        """The key ``text`` carries (base64, surrounding whitespace ignored). The error names
        ``source`` (where the text came from), never the text."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeyringError(f"{source} is not a master key: expected {_EXPECTED}") from None
        return cls(raw, source=source)

    def seal(self, plaintext: bytes, *, aad: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return f"{_SEALED_VERSION}.{b64encode(nonce + self._aead.encrypt(nonce, plaintext, aad))}"

    def open(self, sealed: str, *, aad: bytes) -> bytes | None:
        """What :meth:`seal` sealed with ``aad``; None when this key does not open it."""
        version, _, body = sealed.partition(".")
        raw = b64decode(body) if version == _SEALED_VERSION else None
        if raw is None or len(raw) <= _NONCE_BYTES:
            return None
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return f"MasterKey({self.kek_id}, from {self.source})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class MasterKeySpec:
    """Where this node's master key comes from (see the module docstring)."""

    default_file: Path
    value: Secret[str] | None = None
    file: Path | None = None

    def load(self, *, create: bool) -> MasterKey | None:
        """The master key. Without ``value`` or ``file``, the default file's, which is created
        when ``create`` (a store without keys yet); None when it is missing and not created."""
        if self.value is not None:
            return MasterKey.parse(self.value.reveal(), source=MASTER_KEY_ENV)
        if self.file is not None:
            return _read(self.file, missing_ok=False)
        found = _read(self.default_file, missing_ok=True)
        if found is None and create:
            return _create(self.default_file)
        return found


def _read(path: Path, *, missing_ok: bool) -> MasterKey | None:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise KeyringError(f"master key file {path} does not exist") from None
    except UnicodeDecodeError:
        raise KeyringError(f"master key file {path}: expected {_EXPECTED}") from None
    except OSError as err:
        raise KeyringError(f"cannot read master key file {path}: {err.strerror}") from None
    return MasterKey.parse(text, source=f"master key file {path}")


def _create(path: Path) -> MasterKey:
    """A new key in ``path`` (0600), written whole before it appears under its name. Of two
    processes creating it at once, the second finds the first's and uses that one."""
    text = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii") + "\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        private_directory(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        try:
            os.fchmod(fd, PRIVATE_FILE)  # the mode given to open is filtered by the umask
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # never replaces a key another process wrote meanwhile
        # The store's keys will be sealed by this key: its name must survive a crash too.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        raise KeyringError(f"cannot create master key file {path}: {err.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    created = _read(path, missing_ok=True)
    if created is None:
        raise KeyringError(f"master key file {path} vanished as it was created")
    return created
