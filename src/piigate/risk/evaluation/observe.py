"""Observations from what a login record says: the address's network, keyed hashes.

A raw address never leaves this module: it becomes a keyed hash of itself and of its network
(the /24 of an IPv4 address, the /48 of an IPv6 one; an IPv4-mapped IPv6 address is its IPv4).
"""

from __future__ import annotations

import ipaddress

__all__ = ["network_of"]

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
