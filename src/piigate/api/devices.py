"""The device a request comes from (CONTRACT §4.1): the signed ``piigate_device`` cookie, or
``PIIGate-Device: <id>`` from API clients.

Every edge reads it the same way: the cookie, when one came, is the device (a valid one its id;
a forged, altered or unreadable one no device at all, so it is new to every history); without
the cookie, the header's id (1 to 255 visible ASCII characters; anything else is ignored, as no
device). A device id in a decision's or a verification's ``context`` goes through
:meth:`DeviceCookies.resolve` too, so an app or a remote gateway may relay the cookie's value
as it came from the browser. The service sets the cookie after verified activity (a login, a
step-up) and keeps the id of a valid cookie that came in. The cookie's key is derived from the
deployment's data key (``Keyring.derived_key``) and never leaves the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from starlette.responses import Response

from piigate.crypto.keyring import Keyring
from piigate.risk.devices import (
    client_device_id,
    is_minted,
    read_signed,
    sign_device,
    verify_signed,
)

__all__ = [
    "DEVICE_COOKIE",
    "DEVICE_COOKIE_MAX_AGE",
    "DEVICE_HEADER",
    "DeviceCookies",
    "presented_device",
]

DEVICE_COOKIE: Final = "piigate_device"
DEVICE_HEADER: Final = "PIIGate-Device"
# Browsers cap a cookie's lifetime at 400 days (RFC 6265bis §5.6.1); each verified visit
# renews it.
DEVICE_COOKIE_MAX_AGE: Final = int(timedelta(days=400).total_seconds())
_PURPOSE: Final = b"device-cookie"


def presented_device(cookies: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """What the client presents as its device, unchecked: the cookie's value, else the
    header's (see the module's doc)."""
    cookie = cookies.get(DEVICE_COOKIE)
    if cookie is not None:
        return cookie
    return headers.get(DEVICE_HEADER.lower())


class DeviceCookies:
    """Signs and reads device cookies with a key derived from the keyring's data keys."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._keys: dict[str, bytes] = {}  # derived keys by kid: one derivation per key

    def _key(self, kid: str | None = None) -> tuple[str, bytes] | None:
        if kid is not None and kid in self._keys:
            return kid, self._keys[kid]
        derived = self.keyring.derived_key(_PURPOSE, kid)
        if derived is not None:
            self._keys[derived[0]] = derived[1]
        return derived

    def sign(self, device_id: str) -> str:
        """The cookie value for ``device_id`` (one piigate made), under the current key."""
        derived = self._key()
        assert derived is not None, "the keyring always holds its current data key"
        kid, key = derived
        return sign_device(device_id, key=key, kid=kid)

    async def resolve(self, value: str | None) -> str | None:
        """The device ``value`` names: a cookie value's id when its MAC holds (learning the
        keys another node rotated in first), a client's own id as it is; None for anything
        else (a forged cookie, an id of piigate's shape without its signature, a bad id)."""
        if not value:
            return None
        signed = read_signed(value)
        if signed is None:
            return client_device_id(value)
        derived = self._key(signed.kid)
        if derived is None and await self.keyring.learn(signed.kid):
            derived = self._key(signed.kid)
        if derived is None:
            return None
        return verify_signed(signed, key=derived[1])

    def set_cookie(self, response: Response, device_id: str | None, *, secure: bool) -> None:
        """Give the browser ``device_id``'s cookie (renewed for its full lifetime). Ids that
        clients name themselves (not piigate's) are not cookies: nothing is set for them."""
        if device_id is None or not is_minted(device_id):
            return
        response.set_cookie(
            DEVICE_COOKIE,
            self.sign(device_id),
            max_age=DEVICE_COOKIE_MAX_AGE,
            httponly=True,
            secure=secure,
            samesite="lax",
            path="/",
        )
