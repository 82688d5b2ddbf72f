"""The attackers of the synthetic history, each with the victim's password.

- ``naive``: from another country, a residential network there, any browser (often outdated).
- ``vpn``: through a hosting or VPN network, in or near the victim's country.
- ``targeted``: from the victim's home city, another ISP of their country (or their own ISP's
  other addresses), with the victim's browser and system at the current version.
- ``travel``: from another continent, half an hour to six hours after the victim's own login.
- ``stuffing``: bursts of automated attempts from one address against many accounts, mostly
  failing (wrong passwords), with one outdated user agent.
- ``replay``: the victim's own address and exact user agent, seconds to days after the victim's
  login, without the victim's device cookie.

Every attacker's browser presents a device cookie of its own (a fresh id), as a browser that
never proved who it is does; see docs/RISK.md for what changes when none is presented.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Final

from piigate.risk.evaluation.synth_base import START, Context, User, cookie, login_row, pick
from piigate.risk.evaluation.synth_world import (
    BROWSERS,
    CITIES,
    DESKTOP_MIX,
    PHONE_MIX,
    City,
    hosting_networks,
    residential_networks,
    version_on,
)
from piigate.risk.geodesy import great_circle_km

__all__ = ["ATTACK_TYPES", "attacks"]

ATTACK_TYPES: Final = ("naive", "vpn", "targeted", "travel", "stuffing", "replay")
Row = tuple[datetime, dict[str, str]]
_ANY_SOFTWARE: Final = {**DESKTOP_MIX, **PHONE_MIX, "old-chrome-win": 0.4}


def attacks(
    rnd: random.Random,
    users: list[User],
    legit: dict[str, list[Row]],
    *,
    days: int,
    count: int,
) -> list[Row]:
    """About ``count`` attack attempts of each type (the first two weeks are left alone)."""
    rows: list[Row] = []
    for kind in ATTACK_TYPES:
        made = 0
        while made < count:
            victim = rnd.choice(users)
            moment = START + timedelta(days=rnd.uniform(14, days))
            made += len(_attack(rnd, kind, victim, moment, legit[victim.id], users, rows))
    return rows


def _attack(
    rnd: random.Random,
    kind: str,
    victim: User,
    moment: datetime,
    history: list[Row],
    users: list[User],
    rows: list[Row],
) -> list[Row]:
    earlier = [row for at, row in history if at < moment and row["Login Successful"] == "True"]
    made: list[Row]
    if kind == "stuffing":
        made = _stuffing(rnd, users, moment)
    elif kind in ("replay", "travel"):
        if not earlier:
            return []
        made = [(_replay if kind == "replay" else _travel)(rnd, victim, earlier[-1], moment)]
    else:
        context = {"naive": _naive, "vpn": _vpn, "targeted": _targeted}[kind](rnd, victim, moment)
        made = [(moment, login_row(moment, victim.id, context, successful=True, attack=kind))]
    rows.extend(made)
    return made


def _current(rnd: random.Random, software: str, moment: datetime) -> int:
    return version_on(BROWSERS[software], (moment - START).total_seconds() / 86400)


def _naive(rnd: random.Random, victim: User, moment: datetime) -> Context:
    city = rnd.choice([c for c in CITIES if c.country != victim.home.country])
    network = rnd.choice(residential_networks(city.country))
    software = pick(rnd, _ANY_SOFTWARE)
    version = _current(rnd, software, moment) - rnd.choice([0, 0, 1, 3, 10])
    ip = network.address(rnd)
    return Context(city, network, ip, software, max(1, version), cookie(rnd))


def _vpn(rnd: random.Random, victim: User, moment: datetime) -> Context:
    exits = hosting_networks()
    local = [n for n in exits if n.country == victim.home.country]
    network = rnd.choice(local) if local and rnd.random() < 0.5 else rnd.choice(exits)
    city = _city_in(rnd, network.country)
    software = pick(rnd, DESKTOP_MIX)
    ip = network.address(rnd)
    return Context(city, network, ip, software, _current(rnd, software, moment), cookie(rnd))


def _targeted(rnd: random.Random, victim: User, moment: datetime) -> Context:
    home = victim.home
    if rnd.random() < 0.3:
        network = victim.isp
    else:
        network = rnd.choice([n for n in residential_networks(home.country) if n != victim.isp])
    software = victim.devices[0].software
    ip = network.address(rnd, block=rnd.randrange(1 << 16))
    return Context(home, network, ip, software, _current(rnd, software, moment), cookie(rnd))


def _replay(rnd: random.Random, victim: User, seen: dict[str, str], moment: datetime) -> Row:
    at = datetime.fromisoformat(seen["Login Timestamp"]).replace(tzinfo=moment.tzinfo)
    at += timedelta(seconds=rnd.uniform(30, 3 * 86400))
    row = dict(seen, **{"Login Timestamp": _stamp(at), "Device ID": cookie(rnd)})
    row.update({"Label": "attack", "Attack Type": "replay", "Is Account Takeover": "True"})
    return at, row


def _travel(rnd: random.Random, victim: User, seen: dict[str, str], moment: datetime) -> Row:
    at = datetime.fromisoformat(seen["Login Timestamp"]).replace(tzinfo=moment.tzinfo)
    at += timedelta(hours=rnd.uniform(0.5, 6))
    lat, lon = float(seen["Latitude"]), float(seen["Longitude"])
    far = [c for c in CITIES if great_circle_km(lat, lon, c.latitude, c.longitude) > 2500]
    city = rnd.choice(far)
    network = rnd.choice(residential_networks(city.country))
    software = pick(rnd, _ANY_SOFTWARE)
    version = _current(rnd, software, at)
    context = Context(city, network, network.address(rnd), software, version, cookie(rnd))
    return at, login_row(at, victim.id, context, successful=True, attack="travel")


def _stuffing(rnd: random.Random, users: list[User], moment: datetime) -> list[Row]:
    """One burst: 20 to 60 attempts from one address, a few seconds apart."""
    if rnd.random() < 0.5:
        network = rnd.choice(hosting_networks())
    else:
        city = rnd.choice(CITIES)
        network = rnd.choice(residential_networks(city.country))
    city = _city_in(rnd, network.country)
    ip = network.address(rnd)
    software = rnd.choice(["old-chrome-win", "chrome-win", "firefox-win"])
    version = _current(rnd, software, moment) - rnd.choice([0, 5, 20])
    rows: list[Row] = []
    at = moment
    for _ in range(rnd.randrange(20, 61)):
        victim = rnd.choice(users)
        context = Context(city, network, ip, software, max(1, version), cookie(rnd))
        hit = rnd.random() < 0.1
        rows.append((at, login_row(at, victim.id, context, successful=hit, attack="stuffing")))
        at += timedelta(seconds=rnd.uniform(1, 15))
    return rows


def _city_in(rnd: random.Random, country: str) -> City:
    return rnd.choice([c for c in CITIES if c.country == country])


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}"
