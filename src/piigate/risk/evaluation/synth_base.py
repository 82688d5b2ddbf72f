"""What the synthetic history's users are, and one login as a row of the RBA format."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from piigate.risk.evaluation.rba import COLUMNS, EXTRA_COLUMNS
from piigate.risk.evaluation.synth_world import (
    BROWSERS,
    CITIES,
    DESKTOP_MIX,
    HOME_COUNTRIES,
    PHONE_MIX,
    City,
    Network,
    mobile_network,
    residential_networks,
)

__all__ = ["HEADER", "START", "Context", "User", "login_row", "pick", "synth_users"]

HEADER: Final = ("index", *COLUMNS, *EXTRA_COLUMNS)
START: Final = datetime(2025, 1, 6, tzinfo=UTC)
# Each login: the chance the browser lost its device cookie (cleared, private window).
COOKIE_LOSS: Final = 0.015
# Each login: the chance a failed attempt (a typo) came just before it.
TYPO: Final = 0.04


def pick(rnd: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rnd.choices(names, weights=[weights[n] for n in names])[0]


@dataclass
class Device:
    software: str
    cookie: str
    weight: float
    lag: float  # days before this browser installs a new version
    stale: bool  # never updates


@dataclass(frozen=True)
class Trip:
    start: float  # day the user leaves
    end: float  # day they come back
    city: City
    hotel: Network
    hotel_block: int


@dataclass
class User:
    id: str
    home: City
    isp: Network
    mobile: Network
    rate: float  # logins per day
    devices: list[Device]
    work: tuple[Network, int] | None
    trips: list[Trip] = field(default_factory=list)
    # Day from which each home address block holds (the ISP reassigns now and then).
    blocks: list[tuple[float, int]] = field(default_factory=list)
    replaced: tuple[float, int, str] | None = None  # day, device index, new software

    def block_on(self, day: float) -> int:
        current = self.blocks[0][1]
        for since, block in self.blocks:
            if since <= day:
                current = block
        return current


@dataclass(frozen=True)
class Context:
    """Where and with what one login happens."""

    city: City
    network: Network
    ip: str
    software: str
    version: int
    cookie: str | None


def cookie(rnd: random.Random) -> str:
    return f"d{rnd.getrandbits(64):016x}"


def _device(rnd: random.Random, mix: dict[str, float], weight: float) -> Device:
    stale = rnd.random() < 0.08
    return Device(pick(rnd, mix), cookie(rnd), weight, rnd.expovariate(1 / 5), stale)


def _user(rnd: random.Random, days: int) -> User:
    country = pick(rnd, HOME_COUNTRIES)
    home = rnd.choice([c for c in CITIES if c.country == country])
    devices = [_device(rnd, DESKTOP_MIX, 1.0)]
    if rnd.random() < 0.7:
        devices.append(_device(rnd, PHONE_MIX, rnd.uniform(0.5, 2.0)))
    if rnd.random() < 0.15:
        devices.append(_device(rnd, {"safari-ipad": 1.0}, 0.4))
    work = None
    if rnd.random() < 0.3:
        work = (rnd.choice(residential_networks(country)), rnd.randrange(1 << 16))
    user = User(
        id=str(rnd.getrandbits(63) - (1 << 62)),
        home=home,
        isp=rnd.choice(residential_networks(country)),
        mobile=mobile_network(country),
        rate=min(3.0, max(0.04, rnd.lognormvariate(-1.4, 0.9))),
        devices=devices,
        work=work,
    )
    day = 0.0
    while day < days:
        user.blocks.append((day, rnd.randrange(1 << 16)))
        day += rnd.expovariate(1 / 75)
    user.trips = _trips(rnd, user, days)
    if rnd.random() < 0.2:
        index = rnd.randrange(len(devices))
        mix = DESKTOP_MIX if BROWSERS[devices[index].software].device == "desktop" else PHONE_MIX
        user.replaced = (rnd.uniform(0, days), index, pick(rnd, mix))
    return user


def _trips(rnd: random.Random, user: User, days: int) -> list[Trip]:
    trips: list[Trip] = []
    day = rnd.expovariate(1 / 120)
    while day < days:
        domestic = [c for c in CITIES if c.country == user.home.country and c != user.home]
        if domestic and rnd.random() < 0.55:
            city = rnd.choice(domestic)
        else:
            near = [c for c in CITIES if c.country in ("SE", "DK", "DE", "GB", "NL", "FR", "ES")]
            pool = near if rnd.random() < 0.8 else list(CITIES)
            city = rnd.choice([c for c in pool if c.country != user.home.country])
        length = rnd.uniform(2, 10)
        hotel = rnd.choice(residential_networks(city.country))
        trips.append(Trip(day, day + length, city, hotel, rnd.randrange(1 << 16)))
        day += length + rnd.expovariate(1 / 120)
    return trips


def synth_users(rnd: random.Random, count: int, days: int) -> list[User]:
    return [_user(rnd, days) for _ in range(count)]


def login_row(
    at: datetime, user: str, context: Context, *, successful: bool, attack: str | None
) -> dict[str, str]:
    """One CSV row (without its index) for a login in ``context``."""
    software = BROWSERS[context.software]
    browser, system = software.label(context.version)
    city = context.city
    return {
        "Login Timestamp": at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}",
        "User ID": user,
        "Round-Trip Time [ms]": "",
        "IP Address": context.ip,
        "Country": city.country,
        "Region": city.region,
        "City": city.name,
        "ASN": str(context.network.asn),
        "User Agent String": software.user_agent(context.version),
        "Browser Name and Version": browser,
        "OS Name and Version": system,
        "Device Type": software.device,
        "Login Successful": str(successful),
        "Is Attack IP": str(attack == "stuffing"),
        "Is Account Takeover": str(attack is not None and successful),
        "Label": "legit" if attack is None else "attack",
        "Device ID": context.cookie or "",
        "Latitude": f"{city.latitude:.2f}",
        "Longitude": f"{city.longitude:.2f}",
        "Attack Type": attack or "",
    }
