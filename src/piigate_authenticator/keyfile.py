"""The authenticator's key file: every enrolled device's private key, with its server.

One JSON file — ``--file``, else ``PIIGATE_AUTHENTICATOR_FILE``, else
``~/.config/piigate/authenticator.json`` — created with mode 0600 (its directory 0700) and
refused when others can read it, as ssh refuses a readable private key.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from piigate.factors.push.protocol import DeviceKeyError, DevicePrivateKey, load_private_key
from piigate_authenticator.errors import AuthenticatorError

__all__ = ["DEFAULT_FILE", "FILE_ENV", "DeviceEntry", "KeyFile"]

DEFAULT_FILE = Path("~/.config/piigate/authenticator.json")
FILE_ENV = "PIIGATE_AUTHENTICATOR_FILE"
_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One enrolled device: the server it belongs to, its id there, and its private key."""

    server: str
    device_id: str
    alg: str
    name: str
    subject: str
    private_key: str = field(repr=False)  # PKCS#8 PEM

    def key(self) -> DevicePrivateKey:
        try:
            return load_private_key(self.private_key)
        except DeviceKeyError as exc:
            raise AuthenticatorError(f"device {self.device_id}: {exc}") from None


class KeyFile:
    """The authenticator's key file: written whole (temporary file + rename), mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    def load(self) -> list[DeviceEntry]:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuthenticatorError(f"{self.path}: cannot read: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuthenticatorError(
                f"{self.path} is accessible by other users; run: chmod 600 {self.path}"
            )
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            devices = data["devices"] if data.get("version") == _FORMAT_VERSION else None
            if not isinstance(devices, list):
                raise ValueError("unknown format")
            return [DeviceEntry(**entry) for entry in devices]
        except OSError as exc:
            raise AuthenticatorError(f"{self.path}: cannot read: {exc.strerror}") from None
        except (ValueError, TypeError, KeyError, AttributeError):
            raise AuthenticatorError(f"{self.path}: not a piigate authenticator file") from None

    def save(self, devices: list[DeviceEntry]) -> None:
        body = json.dumps(
            {"version": _FORMAT_VERSION, "devices": [asdict(d) for d in devices]}, indent=2
        )
        directory = self.path.parent
        temporary = directory / f".{self.path.name}.{os.getpid()}.tmp"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created 0600 from the start: the keys are never readable by others, not even
            # between the write and a chmod.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)  # O_CREAT's mode only applies to a new file
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise AuthenticatorError(f"{self.path}: cannot write: {exc.strerror}") from None
