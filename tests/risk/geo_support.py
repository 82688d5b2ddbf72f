"""Small MaxMind DB files for the geolocation tests, written with ``mmdb-writer`` (imported by
name: the test directory is on ``sys.path``). Records have the shape of the real databases'
(GeoIP2-City / DB-IP City, GeoLite2-ASN, GeoIP2-Anonymous-IP)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

__all__ = ["ANON", "ASN", "CITY", "city_record", "write_db"]


def city_record(
    country: str, region: str, city: str, lat: float, lon: float, *, radius: int | None = None
) -> dict[str, Any]:
    location: dict[str, Any] = {"latitude": lat, "longitude": lon}
    if radius is not None:
        location["accuracy_radius"] = radius
    return {
        "country": {"iso_code": country, "names": {"en": country}},
        "subdivisions": [{"names": {"en": region}}],
        "city": {"names": {"en": city}},
        "location": location,
    }


# Networks a test can rely on (global addresses: documentation ranges count as private).
CITY: Mapping[str, dict[str, Any]] = {
    "81.2.69.0/24": city_record("GB", "England", "London", 51.5142, -0.0931, radius=10),
    "89.160.20.0/24": city_record("SE", "Östergötland", "Linköping", 58.4167, 15.6167),
    "2001:218::/32": city_record("JP", "Tokyo", "Tokyo", 35.6895, 139.6917),
    "175.16.199.0/24": city_record("CN", "Jilin", "Changchun", 43.88, 125.3228),
}
ASN: Mapping[str, dict[str, Any]] = {
    "81.2.69.0/24": {"autonomous_system_number": 20712, "autonomous_system_organization": "A"},
    "89.160.20.0/24": {"autonomous_system_number": 29518, "autonomous_system_organization": "B"},
    "54.240.0.0/16": {"autonomous_system_number": 16509, "autonomous_system_organization": "AWS"},
    "2001:218::/32": {"autonomous_system_number": 2914, "autonomous_system_organization": "NTT"},
}
ANON: Mapping[str, dict[str, Any]] = {
    "175.16.199.0/24": {"is_anonymous": True, "is_anonymous_vpn": True},
}


def write_db(path: Path, records: Mapping[str, Mapping[str, Any]], *, kind: str) -> Path:
    """An IPv6 database (IPv4 networks mapped into it, as the real ones are) of ``records``."""
    writer = MMDBWriter(
        ip_version=6, ipv4_compatible=True, database_type=kind, languages=["en"], description=kind
    )
    for network, record in records.items():
        writer.insert_network(IPSet([network]), dict(record))
    writer.to_db_file(str(path))
    return path
