"""A request's :class:`~piigate.model.Context` (raw IP, user agent, device id) turned into the
:class:`~piigate.risk.observation.Observation` the risk engine scores and remembers.

The address is located (``risk.geo``) and the user agent parsed (``risk.clients``); the address,
its network (/24 for IPv4, /48 for IPv6: what one household, office or mobile carrier pool
shares) and the device id are kept only as keyed hashes (``observation.keyed``) under the
deployment's risk key (``risk.keys``), so the history, counters and audit events never hold them
in the clear. An IPv4 address written as IPv6 (``::ffff:192.0.2.1``) is the IPv4 address.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime
from typing import Final

from piigate.crypto.secret import Secret
from piigate.model import Context
from piigate.risk.clients import UNKNOWN_CLIENT, ClientParser
from piigate.risk.geo import GeoLocator
from piigate.risk.observation import Feature, Observation, Place, keyed

__all__ = ["ContextObserver"]

_CACHE_SIZE: Final = 65_536
_NOWHERE: Final = Place()  # no address: no place
_V4_PREFIX: Final = 24
_V6_PREFIX: Final = 48


class ContextObserver:
    def __init__(
        self,
        *,
        geo: GeoLocator,
        clients: ClientParser,
        key: Secret[bytes],
        cache_size: int = _CACHE_SIZE,
    ) -> None:
        self._geo = geo
        self._clients = clients
        self._key = key
        self._address = functools.lru_cache(maxsize=cache_size)(self._address_keys)
        self._device = functools.lru_cache(maxsize=cache_size)(self._device_key)

    def observe(self, context: Context, *, now: datetime) -> Observation:
        place, ip_key, network_key = _NOWHERE, None, None
        if context.ip:
            place = self._geo.locate(context.ip)  # raises when a database fails
            ip_key, network_key = self._address(context.ip)
        client = self._clients.parse(context.user_agent) if context.user_agent else UNKNOWN_CLIENT
        device_key = self._device(context.device_id) if context.device_id else None
        return Observation(
            at=now,
            place=place,
            client=client,
            ip_key=ip_key,
            network_key=network_key,
            device_key=device_key,
        )

    def address_key(self, ip: str) -> str | None:
        """The keyed hash of ``ip`` (None when it is not an address): for audit events."""
        return self._address(ip)[0]

    def _device_key(self, device_id: str) -> str:
        return keyed(self._key.reveal(), Feature.DEVICE, device_id)

    def _address_keys(self, ip: str) -> tuple[str | None, str | None]:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None, None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        prefix = _V4_PREFIX if address.version == 4 else _V6_PREFIX
        network = ipaddress.ip_network((address, prefix), strict=False)
        key = self._key.reveal()
        return keyed(key, Feature.IP, str(address)), keyed(key, Feature.NETWORK, str(network))
