"""The world the synthetic login history lives in: places, networks and browsers.

Coordinates are the cities' own (to about 0.01°). Networks are made up: an ASN number and the
address ranges this generator gives it; the hosting networks' numbers are those of real cloud and
VPN hosters (the default hosting list), so that the evaluation's hosting signal finds them.
User agents are the strings current browsers send, with the version a parameter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BROWSERS",
    "CITIES",
    "HOME_COUNTRIES",
    "City",
    "Network",
    "Software",
    "hosting_networks",
    "mobile_network",
    "residential_networks",
    "version_on",
]


@dataclass(frozen=True, slots=True)
class City:
    country: str
    region: str
    name: str
    latitude: float
    longitude: float


CITIES: Final = (
    City("NO", "Oslo", "Oslo", 59.91, 10.75),
    City("NO", "Vestland", "Bergen", 60.39, 5.32),
    City("NO", "Trondelag", "Trondheim", 63.43, 10.40),
    City("NO", "Rogaland", "Stavanger", 58.97, 5.73),
    City("NO", "Troms og Finnmark", "Tromso", 69.65, 18.96),
    City("NO", "Viken", "Drammen", 59.74, 10.20),
    City("SE", "Stockholm", "Stockholm", 59.33, 18.07),
    City("SE", "Vastra Gotaland", "Gothenburg", 57.71, 11.97),
    City("DK", "Capital Region", "Copenhagen", 55.68, 12.57),
    City("DE", "Berlin", "Berlin", 52.52, 13.40),
    City("DE", "Bavaria", "Munich", 48.14, 11.58),
    City("DE", "Hesse", "Frankfurt am Main", 50.11, 8.68),
    City("GB", "England", "London", 51.51, -0.13),
    City("GB", "England", "Manchester", 53.48, -2.24),
    City("NL", "North Holland", "Amsterdam", 52.37, 4.90),
    City("FR", "Ile-de-France", "Paris", 48.86, 2.35),
    City("ES", "Madrid", "Madrid", 40.42, -3.70),
    City("ES", "Catalonia", "Barcelona", 41.39, 2.17),
    City("IT", "Lazio", "Rome", 41.90, 12.50),
    City("PL", "Mazovia", "Warsaw", 52.23, 21.01),
    City("US", "New York", "New York", 40.71, -74.01),
    City("US", "Illinois", "Chicago", 41.88, -87.63),
    City("US", "California", "San Francisco", 37.77, -122.42),
    City("US", "Virginia", "Ashburn", 39.04, -77.49),
    City("BR", "Sao Paulo", "Sao Paulo", -23.55, -46.63),
    City("IN", "Maharashtra", "Mumbai", 19.08, 72.88),
    City("ID", "Jakarta", "Jakarta", -6.21, 106.85),
    City("NG", "Lagos", "Lagos", 6.52, 3.38),
    City("RU", "Moscow", "Moscow", 55.76, 37.62),
    City("CN", "Beijing", "Beijing", 39.90, 116.41),
    City("JP", "Tokyo", "Tokyo", 35.68, 139.69),
    City("AU", "New South Wales", "Sydney", -33.87, 151.21),
    City("VN", "Hanoi", "Hanoi", 21.03, 105.85),
    City("SG", "Singapore", "Singapore", 1.35, 103.82),
    City("TR", "Istanbul", "Istanbul", 41.01, 28.98),
    City("ZA", "Gauteng", "Johannesburg", -26.20, 28.05),
)
# Where the service's users live (a Norwegian service, as the public RBA data set's).
HOME_COUNTRIES: Final = {"NO": 0.72, "SE": 0.08, "DK": 0.04, "DE": 0.05, "GB": 0.05, "US": 0.06}


@dataclass(frozen=True, slots=True)
class Network:
    """An autonomous system as the generator uses it: its number, kind and address ranges."""

    asn: int
    country: str
    kind: str  # residential | mobile | business | hosting
    v4: tuple[int, ...]  # first octets of its /16s: 10.x would be private, so never below 11

    def address(self, rnd: random.Random, *, block: int | None = None) -> str:
        """An address in one of its /16s; ``block`` pins it (a household's, an office's)."""
        pinned = block if block is not None else rnd.randrange(1 << 16)
        first = self.v4[pinned % len(self.v4)]
        second = (self.asn * 7 + first) % 256
        host = (pinned * 37) % 252 + 2 if block is not None else rnd.randrange(2, 254)
        return f"{first}.{second}.{(pinned >> 1) % 256}.{host}"

    def address_v6(self, rnd: random.Random) -> str:
        """A mobile carrier's IPv6 address: a /48 out of its pool, a /64 per device session."""
        return (
            f"2a0{self.asn % 10:x}:{self.asn % 65536:x}:{rnd.randrange(256):x}:"
            f"{rnd.randrange(65536):x}::{rnd.randrange(1, 65536):x}"
        )


def _nets(country: str, kind: str, *asns: int) -> tuple[Network, ...]:
    return tuple(
        Network(asn, country, kind, (11 + (asn * 31 + n * 17) % 180, 60 + (asn + n) % 120))
        for n, asn in enumerate(asns)
    )


_RESIDENTIAL: Final = {
    c: _nets(c, "residential", *range(base, base + 4))
    for c, base in (
        ("NO", 64600), ("SE", 64610), ("DK", 64620), ("DE", 64630), ("GB", 64640),
        ("NL", 64650), ("FR", 64660), ("ES", 64670), ("IT", 64680), ("PL", 64690),
        ("US", 64700), ("BR", 64710), ("IN", 64720), ("ID", 64730), ("NG", 64740),
        ("RU", 64750), ("CN", 64760), ("JP", 64770), ("AU", 64780), ("VN", 64790),
        ("SG", 64800), ("TR", 64810), ("ZA", 64820),
    )
}  # fmt: skip
_MOBILE: Final = {c: _nets(c, "mobile", 65000 + n)[0] for n, c in enumerate(_RESIDENTIAL)}
# Real hosters' numbers (on the default hosting list), in the cities they serve from.
_HOSTING: Final = (
    ("DE", 24940), ("DE", 51167), ("NL", 60781), ("NL", 9009), ("GB", 16276), ("US", 16509),
    ("US", 14061), ("US", 20473), ("SE", 39351), ("NO", 9009), ("SG", 14061), ("FR", 16276),
)  # fmt: skip


def residential_networks(country: str) -> tuple[Network, ...]:
    return _RESIDENTIAL[country]


def mobile_network(country: str) -> Network:
    return _MOBILE[country]


def hosting_networks() -> tuple[Network, ...]:
    return tuple(_nets(country, "hosting", asn)[0] for country, asn in _HOSTING)


@dataclass(frozen=True, slots=True)
class Software:
    """A browser on a system, as its user agent shows it."""

    browser: str
    os: str
    os_version: str
    device: str  # desktop | mobile | tablet
    template: str  # {v}: the browser's major version
    # The major version on day 0 of the history, and days between majors (0: fixed).
    first: int
    cadence: int

    def user_agent(self, version: int) -> str:
        return self.template.format(v=version)

    def label(self, version: int) -> tuple[str, str]:
        """The RBA data set's "Browser Name and Version" and "OS Name and Version" columns."""
        return f"{self.browser} {version}.0.0", f"{self.os} {self.os_version}"


_WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
_IPHONE = "iPhone; CPU iPhone OS 18_2 like Mac OS X"
BROWSERS: Final = {
    "chrome-win": Software("Chrome", "Windows", "10", "desktop",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36",
        132, 28),
    "edge-win": Software("Edge", "Windows", "10", "desktop",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36 "
        "Edg/{v}.0.0.0", 132, 28),
    "firefox-win": Software("Firefox", "Windows", "10", "desktop",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
        134, 28),
    "chrome-mac": Software("Chrome", "Mac OS X", "10.15.7", "desktop",
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Chrome/{{v}}.0.0.0 "
        "Safari/537.36", 132, 28),
    "safari-mac": Software("Safari", "Mac OS X", "10.15.7", "desktop",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/{v}.2 Safari/605.1.15", 18, 0),
    "firefox-linux": Software("Firefox", "Ubuntu", "", "desktop",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
        134, 28),
    "safari-iphone": Software("Mobile Safari", "iOS", "18.2", "mobile",
        f"Mozilla/5.0 ({_IPHONE}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{{v}}.2 "
        "Mobile/15E148 Safari/604.1", 18, 0),
    "chrome-android": Software("Chrome Mobile", "Android", "10", "mobile",
        f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT} Chrome/{{v}}.0.0.0 Mobile Safari/537.36",
        132, 28),
    "samsung-android": Software("Samsung Internet", "Android", "10", "mobile",
        f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT} SamsungBrowser/{{v}}.0 Chrome/130.0.0.0 "
        "Mobile Safari/537.36", 27, 90),
    "safari-ipad": Software("Mobile Safari", "iOS", "18.2", "tablet",
        "Mozilla/5.0 (iPad; CPU OS 18_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/{v}.2 Mobile/15E148 Safari/604.1", 18, 0),
    # What automated attacks often send: an outdated desktop browser.
    "old-chrome-win": Software("Chrome", "Windows", "7", "desktop",
        f"Mozilla/5.0 (Windows NT 6.1; Win64; x64) {_WEBKIT} Chrome/{{v}}.0.3987.149 "
        "Safari/537.36", 80, 0),
    "opera-win": Software("Opera", "Windows", "10", "desktop",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/131.0.0.0 Safari/537.36 "
        "OPR/{v}.0.0.0", 116, 28),
}  # fmt: skip
DESKTOP_MIX: Final = {
    "chrome-win": 0.45, "edge-win": 0.12, "firefox-win": 0.08, "chrome-mac": 0.1,
    "safari-mac": 0.15, "firefox-linux": 0.05, "opera-win": 0.05,
}  # fmt: skip
PHONE_MIX: Final = {"safari-iphone": 0.5, "chrome-android": 0.4, "samsung-android": 0.1}


def version_on(software: Software, day: float) -> int:
    """The newest major version released by ``day`` (days since the history began)."""
    if software.cadence == 0:
        return software.first
    return software.first + int(max(0.0, day) // software.cadence)
