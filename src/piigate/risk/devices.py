"""Device identity: the ids piigate gives browsers, and the signed ``piigate_device`` cookie
value that carries one.

A browser gets a random id (``dev_`` and 128 bits) after verified activity, in a cookie whose
value is ``<id>.<kid>.<mac>``: the HMAC-SHA256 of the id under a key derived from the
deployment's data key ``kid`` (``Keyring.derived_key``), so that old cookies stay readable after
a key rotation. API clients name their device themselves (``PIIGate-Device: <id>``, or
``context.device_id`` in a decision), in a namespace of their own: an id of piigate's shape is
only ever accepted with its signature, so nobody can claim a browser's device by its id alone.

Pure: the key is a parameter, comparisons are constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from piigate.ids import new_id

__all__ = [
    "MAX_DEVICE_ID",
    "SignedDevice",
    "client_device_id",
    "is_minted",
    "new_device_id",
    "read_signed",
    "sign_device",
    "verify_signed",
]

# The longest device id accepted (the decision request's ``context.device_id`` bound).
MAX_DEVICE_ID: Final = 255
_PREFIX: Final = "dev"
_MINTED: Final = re.compile(r"dev_[A-Za-z0-9_-]{22}")
# <id>.<kid>.<base64url(HMAC-SHA256)>; kids are "dek-" and hex (never a ".").
_SIGNED: Final = re.compile(r"(dev_[A-Za-z0-9_-]{22})\.([A-Za-z0-9-]{1,64})\.([A-Za-z0-9_-]{43})")
# A client's own id: visible ASCII, no spaces (it travels in a header).
_CLIENT: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_DEVICE_ID}}}")


def new_device_id() -> str:
    """A new random device id: ``dev_`` and 128 bits from the OS CSPRNG."""
    return new_id(_PREFIX)


def is_minted(device_id: str) -> bool:
    """An id of piigate's making (what the cookie carries)."""
    return _MINTED.fullmatch(device_id) is not None


@dataclass(frozen=True, slots=True)
class SignedDevice:
    """A cookie value taken apart; nothing about it is trusted before :func:`verify_signed`."""

    device_id: str
    kid: str
    mac: str


def _mac(key: bytes, device_id: str, kid: str) -> str:
    message = f"piigate-device\x00{device_id}\x00{kid}".encode("ascii")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_device(device_id: str, *, key: bytes, kid: str) -> str:
    """The cookie value carrying ``device_id`` (one of :func:`new_device_id`'s)."""
    if not is_minted(device_id):
        raise ValueError("only piigate's own device ids are signed")
    return f"{device_id}.{kid}.{_mac(key, device_id, kid)}"


def read_signed(value: str) -> SignedDevice | None:
    """``value`` taken apart when it has the cookie's shape; None otherwise."""
    found = _SIGNED.fullmatch(value)
    if found is None:
        return None
    return SignedDevice(found.group(1), found.group(2), found.group(3))


def verify_signed(signed: SignedDevice, *, key: bytes) -> str | None:
    """The device id when the MAC is right under ``key`` (the kid's), compared in constant
    time; None for a forged or altered value."""
    expected = _mac(key, signed.device_id, signed.kid)
    if hmac.compare_digest(expected.encode("ascii"), signed.mac.encode("ascii")):
        return signed.device_id
    return None


def client_device_id(value: str) -> str | None:
    """A device id a client names itself, as it counts: 1 to 255 visible ASCII characters and
    not of piigate's shape (that id counts only with its signature); None otherwise."""
    if _CLIENT.fullmatch(value) is None or is_minted(value):
        return None
    return value
