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
    ip = ipaddress.ip_address(address.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    network = ipaddress.ip_network(f"{ip}/{_PREFIX[ip.version]}", strict=False)
    return str(network)


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
            device_key=None if device is None else keyed(self._key, Feature.DEVICE, device),
        )

    def _address_keys(self, address: str) -> tuple[str, str]:
        return (
            keyed(self._key, Feature.IP, address),
            keyed(self._key, Feature.NETWORK, network_of(address)),
        )
