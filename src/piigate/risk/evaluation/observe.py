"""Observations from what a login record says: the address's network, keyed hashes.

A raw address never leaves this module: it becomes a keyed hash of itself and of its network
(the /24 of an IPv4 address, the /48 of an IPv6 one; an IPv4-mapped IPv6 address is its IPv4).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

from piigate.risk.evaluation.rba import LoginRecord
from piigate.risk.observation import Client, Feature, Observation, Place, keyed

__all__ = ["RecordObserver", "network_of"]

_PREFIX = {4: 24, 6: 48}


def network_of(address: str) -> str:
    """The network an address is counted in: ``192.0.2.0/24``, ``2001:db8:1::/48``.

    Raises ``ValueError`` for what is not an IP address.
    """
    quad = _dotted_quad(address)
    if quad is not None:  # the common case, without ipaddress's object
        return f"{quad[0]}.{quad[1]}.{quad[2]}.0/24"
    ip = ipaddress.ip_address(address.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    network = ipaddress.ip_network(f"{ip}/{_PREFIX[ip.version]}", strict=False)
    return str(network)


def _dotted_quad(address: str) -> list[str] | None:
    """The four parts of a plain IPv4 address as ``ipaddress`` accepts it (decimal, 0-255, no
    leading zeros), else None (anything else goes through ``ipaddress``)."""
    parts = address.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        if not (part.isdigit() and part.isascii() and len(part) <= 3 and int(part) <= 255):
            return None
        if len(part) > 1 and part[0] == "0":
            return None
    return parts


class RecordObserver:
    """A login record as the :class:`Observation` the risk engine scores.

    The place is the record's own columns (the file's geolocation; ``Latitude``/``Longitude``
    when present), with ``hosting`` from the ASN list; the user agent is parsed by ``clients``
    (the live engine's parser); the address, its network and the device cookie become keyed
    hashes under ``key``. ``devices=False`` ignores the device column (as if no client ever
    presented one).
    """

    def __init__(
        self,
        *,
        key: bytes,
        clients: Callable[[str], Client],
        hosting_asns: frozenset[int],
        devices: bool = True,
    ) -> None:
        self._key = key
        self._clients = clients
        self._hosting = hosting_asns
        self._devices = devices
        self._address = functools.lru_cache(maxsize=65_536)(self._address_keys)
        self._device = functools.lru_cache(maxsize=65_536)(self._device_key)

    def observe(self, record: LoginRecord) -> Observation:
        place = Place(
            country=record.country,
            region=record.region,
            city=record.city,
            latitude=record.latitude,
            longitude=record.longitude,
            asn=record.asn,
            hosting=record.asn is not None and record.asn in self._hosting,
        )
        ip_key, network_key = self._address(record.ip)
        device = record.device if self._devices else None
        return Observation(
            at=record.at,
            place=place,
            client=self._clients(record.user_agent) if record.user_agent else Client(),
            ip_key=ip_key,
            network_key=network_key,
            device_key=None if device is None else self._device(device),
        )

    def _device_key(self, device: str) -> str:
        return keyed(self._key, Feature.DEVICE, device)

    def _address_keys(self, address: str) -> tuple[str, str]:
        return (
            keyed(self._key, Feature.IP, address),
            keyed(self._key, Feature.NETWORK, network_of(address)),
        )
