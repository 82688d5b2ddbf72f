"""MemoryHistory keeps what the store keeps: the newest HISTORY_VALUES values per feature, seen
within HISTORY_DAYS; the population counts every verified observation once per feature."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from risk_support import NEW_YORK, OSLO, T0, seen

from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import HISTORY_DAYS, HISTORY_VALUES, Feature, Place


def test_counts_and_last_sightings() -> None:
    memory = MemoryHistory()
    memory.remember_now("ann", seen(at=T0))
    memory.remember_now("ann", seen(at=T0 + timedelta(hours=1)))
    memory.remember_now("ann", seen(at=T0 + timedelta(hours=2), place=NEW_YORK))
    history = memory.history_now("ann", now=T0 + timedelta(hours=3))
    assert history.verified == 3
    assert history.seen(Feature.COUNTRY, "NO") == 2
    assert history.seen(Feature.COUNTRY, "US") == 1
    assert history.values[Feature.COUNTRY]["NO"].last_at == T0 + timedelta(hours=1)
    assert history.total(Feature.CITY) == 3
    assert history.last_place is not None
    assert history.last_place.country == "US"
    assert memory.history_now("bob", now=T0).verified == 0


def test_the_population_counts_every_subject() -> None:
    memory = MemoryHistory()
    memory.remember_now("ann", seen(at=T0))
    memory.remember_now("bob", seen(at=T0, place=NEW_YORK))
    memory.remember_now("bob", seen(at=T0 + timedelta(minutes=1), place=NEW_YORK))
    population = memory.population_now()
    assert population.verified == 3
    assert population.count(Feature.COUNTRY, "US") == 2
    assert population.count(Feature.ASN, "AS2119") == 1


def test_at_most_the_newest_values_per_feature() -> None:
    memory = MemoryHistory()
    for n in range(HISTORY_VALUES + 5):
        memory.remember_now("ann", seen(at=T0 + timedelta(minutes=n), device=f"d{n}"))
    # d0 was seen again last, so it is the newest and stays; d1..d5 are forgotten.
    memory.remember_now("ann", seen(at=T0 + timedelta(days=1), device="d0"))
    history = memory.history_now("ann", now=T0 + timedelta(days=1))
    devices = history.values[Feature.DEVICE]
    assert len(devices) == HISTORY_VALUES
    assert history.seen(Feature.DEVICE, seen(device="d0").device_key or "") == 1
    for gone in range(1, 6):
        assert history.seen(Feature.DEVICE, seen(device=f"d{gone}").device_key or "") == 0
    assert history.seen(Feature.DEVICE, seen(device="d6").device_key or "") == 1


def test_values_older_than_the_kept_period_are_forgotten() -> None:
    memory = MemoryHistory()
    memory.remember_now("ann", seen(at=T0))
    memory.remember_now("ann", seen(at=T0 + timedelta(days=100), place=NEW_YORK))
    kept = T0 + timedelta(days=HISTORY_DAYS)
    history = memory.history_now("ann", now=kept)
    assert history.seen(Feature.COUNTRY, "NO") == 1
    later = memory.history_now("ann", now=kept + timedelta(seconds=1))
    assert later.seen(Feature.COUNTRY, "NO") == 0
    assert later.seen(Feature.COUNTRY, "US") == 1
    assert later.verified == 1
    gone = memory.history_now("ann", now=T0 + timedelta(days=100 + HISTORY_DAYS, seconds=1))
    assert gone.verified == 0
    assert gone.values == {}
    assert gone.last_place is None


def test_private_or_unlocated_places_do_not_move_the_last_place() -> None:
    memory = MemoryHistory()
    memory.remember_now("ann", seen(at=T0))
    memory.remember_now("ann", seen(at=T0 + timedelta(hours=1), place=Place("US")))
    lan = Place(latitude=1.0, longitude=1.0, private=True)
    memory.remember_now("ann", seen(at=T0 + timedelta(hours=2), place=lan))
    last = memory.history_now("ann", now=T0 + timedelta(hours=3)).last_place
    assert last is not None
    assert (last.latitude, last.longitude, last.at) == (OSLO.latitude, OSLO.longitude, T0)


def test_the_async_store_protocol() -> None:
    async def scenario() -> tuple[int, int]:
        memory = MemoryHistory()
        await memory.remember("ann", seen(at=T0))
        history = await memory.history("ann", now=T0)
        population = await memory.population(now=T0)
        return history.verified, population.verified

    assert asyncio.run(scenario()) == (1, 1)


def test_a_history_is_handed_out_again_until_it_changes_and_never_changes_itself() -> None:
    memory = MemoryHistory()
    memory.remember_now("ann", seen(at=T0))
    first = memory.history_now("ann", now=T0 + timedelta(hours=1))
    assert memory.history_now("ann", now=T0 + timedelta(hours=2)) is first
    population = memory.population_now()
    assert memory.population_now() is population
    memory.remember_now("ann", seen(at=T0 + timedelta(hours=3), place=NEW_YORK))
    after = memory.history_now("ann", now=T0 + timedelta(hours=3))
    assert after is not first
    assert first.verified == 1 and first.seen(Feature.COUNTRY, "US") == 0
    assert after.verified == 2 and after.seen(Feature.COUNTRY, "US") == 1
    assert memory.population_now() is not population
    # Falling out of the kept period is a change too.
    later = memory.history_now("ann", now=T0 + timedelta(days=HISTORY_DAYS, hours=2))
    assert later is not after and later.verified == 1
