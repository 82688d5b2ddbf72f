"""The legitimate users' logins of the synthetic history.

Each user has a home city and ISP (whose address block changes every few months), one to three
devices (a computer; often a phone, sometimes a tablet) whose browsers update themselves some
days after each release (a few never do), a workplace network for some, a mobile network for
the phone (IPv4 or IPv6, a new address most times), and trips (half domestic, most abroad ones
in Europe) spent on hotel networks or roaming on the home carrier. Now and then a browser loses
its device cookie, a device is replaced, or a typo makes a failed attempt before the login.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from piigate.risk.evaluation.synth_base import (
    COOKIE_LOSS,
    START,
    TYPO,
    Context,
    Device,
    Trip,
    User,
    cookie,
    login_row,
)
from piigate.risk.evaluation.synth_world import BROWSERS, version_on
from piigate.risk.geodesy import great_circle_km

__all__ = ["legit_logins"]

Row = tuple[datetime, dict[str, str]]
# When in the day people log in: hour → weight.
_HOURS = [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 1, 1.5, 1.5, 1.3, 1.2]
_HOURS += [1.4, 1.3, 1.2, 1.2, 1.2, 1.3, 1.5, 1.7, 1.8, 1.6, 1.1, 0.6]


def _poisson(rnd: random.Random, mean: float) -> int:
    limit, count, product = math.exp(-mean), 0, rnd.random()
    while product > limit:
        count += 1
        product *= rnd.random()
    return count


def legit_logins(rnd: random.Random, user: User, days: int) -> list[Row]:
    """The user's login attempts, in time order."""
    rows: list[Row] = []
    for day in range(days):
        hours = sorted(
            rnd.choices(range(24), weights=_HOURS)[0] + rnd.random()
            for _ in range(_poisson(rnd, user.rate))
        )
        for hour in hours:
            moment = day + hour / 24
            context = _context(rnd, user, moment)
            if context is None:
                continue
            at = START + timedelta(days=moment)
            if rnd.random() < TYPO:
                typo = at - timedelta(seconds=rnd.uniform(5, 40))
                rows.append(
                    (typo, login_row(typo, user.id, context, successful=False, attack=None))
                )
            rows.append((at, login_row(at, user.id, context, successful=True, attack=None)))
    return rows


def _trip_on(user: User, moment: float) -> tuple[Trip | None, bool]:
    """The trip the user is on at ``moment``, and whether they are in the air or on the road."""
    for trip in user.trips:
        distance = great_circle_km(
            user.home.latitude, user.home.longitude, trip.city.latitude, trip.city.longitude
        )
        transit = (distance / 700 + 3) / 24
        if trip.start <= moment < trip.end + transit:
            moving = moment < trip.start + transit or moment >= trip.end
            return trip, moving
    return None, False


def _device_on(rnd: random.Random, user: User, moment: float) -> Device:
    if user.replaced is not None and moment >= user.replaced[0]:
        _, index, software = user.replaced
        old = user.devices[index]
        user.devices[index] = Device(software, cookie(rnd), old.weight, old.lag, False)
        user.replaced = None
    device = rnd.choices(user.devices, weights=[d.weight for d in user.devices])[0]
    if rnd.random() < COOKIE_LOSS:
        device.cookie = cookie(rnd)
    return device


def _context(rnd: random.Random, user: User, moment: float) -> Context | None:
    trip, moving = _trip_on(user, moment)
    if moving:
        return None
    device = _device_on(rnd, user, moment)
    software = BROWSERS[device.software]
    version = software.first if device.stale else version_on(software, moment - device.lag)
    portable = software.device != "desktop"
    if trip is not None:
        if portable and rnd.random() < 0.5:  # roaming: the home carrier, located at home
            ip = user.mobile.address(rnd)
            return Context(user.home, user.mobile, ip, device.software, version, device.cookie)
        ip = trip.hotel.address(rnd, block=trip.hotel_block)
        return Context(trip.city, trip.hotel, ip, device.software, version, device.cookie)
    network, block = user.isp, user.block_on(moment)
    hour = (moment % 1) * 24
    weekday = int(moment) % 7 < 5
    at_work = not portable and weekday and 8 <= hour < 17
    if user.work is not None and at_work and rnd.random() < 0.7:
        network, block = user.work
    if software.device == "mobile" and rnd.random() < 0.55:
        network = user.mobile
        v6 = rnd.random() < 0.5
        ip = network.address_v6(rnd) if v6 else network.address(rnd)
        return Context(user.home, network, ip, device.software, version, device.cookie)
    ip = network.address(rnd, block=block)
    return Context(user.home, network, ip, device.software, version, device.cookie)
