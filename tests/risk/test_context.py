"""Each context signal against injected histories: when it fires, what it contributes, and what
its detail says (never a raw address, user agent or device id)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from risk_support import (
    BERGEN,
    CHROME_WIN,
    KEY,
    NEW_YORK,
    OSLO,
    SAFARI_IOS,
    T0,
    routine,
    seen,
    settings,
)

from piigate.model import Signal
from piigate.risk.context import context_signals
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import Client, Feature, Observation, Place, keyed

NOW = T0 + timedelta(days=21)
DEFAULTS = settings()


def signals_for(
    observation: Observation, memory: MemoryHistory, subject: str = "ann"
) -> dict[str, Signal]:
    history = memory.history_now(subject, now=observation.at)
    found = context_signals(observation, history, memory.population_now(), DEFAULTS)
    assert len({s.name for s in found}) == len(found)
    return {s.name: s for s in found}


def test_a_routine_login_fires_nothing() -> None:
    assert signals_for(seen(at=NOW), routine()) == {}


def test_first_verified_activity_fires_no_history_and_nothing_relative_to_the_subject() -> None:
    fired = signals_for(seen(at=NOW, place=NEW_YORK, client=SAFARI_IOS), routine(), "newcomer")
    assert set(fired) == {"no_history"}
    assert fired["no_history"].weight == 20


def test_first_activity_from_a_hosting_network_gets_no_credit() -> None:
    vpn = replace(OSLO, asn=9009, hosting=True)
    fired = signals_for(seen(at=NOW, place=vpn), MemoryHistory(), "newcomer")
    assert fired["hosting_network"].weight == 25
    assert "AS9009" in fired["hosting_network"].detail


def test_new_device_weighs_by_how_steady_the_subject_is() -> None:
    fired = signals_for(seen(at=NOW, device="cookie-2"), routine())
    # 20 sightings of one device: 30 x 20/21.
    assert fired["new_device"].weight == 29
    assert set(fired) == {"new_device"}
    churner = MemoryHistory()
    for day in range(20):
        churner.remember_now("ann", seen(at=T0 + timedelta(days=day), device=f"c{day % 10}"))
    # 20 sightings of 10 devices: 30 x 20/30.
    assert signals_for(seen(at=NOW, device="new"), churner)["new_device"].weight == 20


def test_no_device_key_is_no_signal_and_no_credit() -> None:
    assert signals_for(seen(at=NOW, device=None), routine()) == {}
    # Without a device key, the other evidence stands as it would with an unknown device.
    away = seen(at=NOW, device=None, place=NEW_YORK, ip="198.51.100.1", network="198.51.100.0/24")
    assert set(signals_for(away, routine())) == {"new_country", "new_asn", "new_network"}


def test_one_earlier_sighting_is_half_the_confidence() -> None:
    fired = signals_for(seen(at=NOW, place=NEW_YORK), routine(days=1))
    assert fired["new_country"].weight == 20
    assert fired["new_asn"].weight == 8  # 15 / 2, rounded to even


def test_new_country_asn_and_network_name_only_what_may_be_shown() -> None:
    away = seen(at=NOW, place=NEW_YORK, ip="198.51.100.7", network="198.51.100.0/24", device="zz")
    fired = signals_for(away, routine())
    assert fired["new_country"].weight == 38
    assert "country US" in fired["new_country"].detail
    assert "AS7922" in fired["new_asn"].detail
    assert fired["new_network"].weight == 10
    for signal in fired.values():
        for raw in ("198.51.100", "zz", "cookie", "Mozilla"):
            assert raw not in signal.detail


def test_a_traveller_gets_less_for_a_new_country_than_a_homebody() -> None:
    traveller = MemoryHistory()
    places = [OSLO, NEW_YORK, replace(OSLO, country="SE"), replace(OSLO, country="DK")]
    for day in range(20):
        traveller.remember_now("ann", seen(at=T0 + timedelta(days=day), place=places[day % 4]))
    new = replace(BERGEN, country="FI", asn=1759)
    assert signals_for(seen(at=NOW, place=new), traveller)["new_country"].weight == 33
    assert signals_for(seen(at=NOW, place=new), routine())["new_country"].weight == 38


def test_a_browser_upgrade_scores_low_and_a_new_family_scores_high() -> None:
    upgraded = replace(CHROME_WIN, browser_major="131")
    assert "unfamiliar_client" not in signals_for(seen(at=NOW, client=upgraded), routine())
    fired = signals_for(seen(at=NOW, client=SAFARI_IOS), routine())
    assert fired["unfamiliar_client"].weight == 15
    assert "Mobile Safari/iOS/mobile" in fired["unfamiliar_client"].detail


def test_an_older_version_and_a_new_family_on_the_same_system_are_middling_evidence() -> None:
    memory = routine()
    firefox = Client("Firefox", "133", "Windows", "10", "desktop")
    # Others use Firefox and many versions of Chrome, as a real population does.
    others = [firefox, *(replace(CHROME_WIN, browser_major=str(v)) for v in range(120, 131))]
    for day in range(20):
        for n, client in enumerate(others):
            memory.remember_now(f"u{n}", seen(at=T0 + timedelta(days=day), client=client))
    old = signals_for(seen(at=NOW, client=replace(CHROME_WIN, browser_major="120")), memory)
    new_family = signals_for(seen(at=NOW, client=firefox), memory)
    new_everything = signals_for(seen(at=NOW, client=SAFARI_IOS), memory)
    low = old["unfamiliar_client"].weight
    mid = new_family["unfamiliar_client"].weight
    assert 0 < low < 15
    assert 0 < mid < 15
    assert new_everything["unfamiliar_client"].weight == 15


def test_a_client_of_unknown_families_is_no_signal() -> None:
    assert "unfamiliar_client" not in signals_for(seen(at=NOW, client=Client()), routine())


def test_hosting_network_weighs_less_for_a_subject_who_uses_it() -> None:
    vpn = replace(OSLO, asn=9009, hosting=True)
    assert signals_for(seen(at=NOW, place=vpn), routine())["hosting_network"].weight == 25
    memory = routine()
    for day in range(10):
        memory.remember_now("ann", seen(at=T0 + timedelta(days=day, hours=12), place=vpn))
    # 10 of 30 sightings (2 ASNs): 25 x (1 - 10/32).
    assert signals_for(seen(at=NOW, place=vpn), memory)["hosting_network"].weight == 17


def test_private_addresses_have_no_geography() -> None:
    lan = Place("US", "New York", "New York", 40.71, -74.01, 5.0, 64500, hosting=True, private=True)
    fired = signals_for(seen(at=T0 + timedelta(days=19, minutes=30), place=lan), routine())
    assert set(fired) <= {"new_network"}


@pytest.mark.parametrize(
    ("elapsed", "place", "expected"),
    [
        (timedelta(hours=2), NEW_YORK, 70),  # 5915 km in 2 h: ~2900 km/h, impossible
        (timedelta(hours=1), BERGEN, None),  # 305 km - 140 km explained: 165 km/h
        (timedelta(minutes=30), BERGEN, 39),  # 330 km/h: 70 x (0.5 + 0.5 x 80/650)
        (timedelta(seconds=10), BERGEN, 70),  # counted as 5 minutes: 1980 km/h
        (timedelta(hours=12), NEW_YORK, 47),  # 481 km/h: a fast flight is only suspicious
        (timedelta(hours=20), NEW_YORK, 37),  # 289 km/h
        (timedelta(hours=24), NEW_YORK, None),  # 241 km/h: below suspicious
    ],
)
def test_travel_speed_bands(elapsed: timedelta, place: Place, expected: int | None) -> None:
    memory = routine()
    last = T0 + timedelta(days=19)
    fired = signals_for(seen(at=last + elapsed, place=place), memory)
    travel = fired.get("impossible_travel")
    assert (None if travel is None else travel.weight) == expected
    if travel is not None:
        assert "km/h" in travel.detail


def test_no_travel_without_history_or_coordinates() -> None:
    unlocated = Place("US", asn=7922)
    fired = signals_for(seen(at=T0 + timedelta(days=19, minutes=5), place=unlocated), routine())
    assert "impossible_travel" not in fired
    assert "impossible_travel" not in signals_for(
        seen(at=NOW, place=NEW_YORK), MemoryHistory(), "x"
    )


def test_ipv6_observations_are_keyed_by_their_48() -> None:
    from piigate.risk.evaluation.observe import network_of

    memory = MemoryHistory()
    for day in range(10):
        memory.remember_now(
            "ann",
            seen(
                at=T0 + timedelta(days=day),
                ip="2001:db8:1:2::5",
                network=network_of("2001:db8:1:2::5"),
            ),
        )
    same_48 = seen(at=NOW, ip="2001:db8:1:ffff::9", network=network_of("2001:db8:1:ffff::9"))
    other_48 = seen(at=NOW, ip="2001:db8:2::9", network=network_of("2001:db8:2::9"))
    assert "new_network" not in signals_for(same_48, memory)
    assert signals_for(other_48, memory)["new_network"].weight == 9


def test_zero_weights_turn_signals_off() -> None:
    off = settings(new_country=0, new_asn=0, new_network=0, impossible_travel=0)
    observation = seen(at=T0 + timedelta(days=19, hours=1), place=NEW_YORK)
    memory = routine()
    found = context_signals(
        observation, memory.history_now("ann", now=observation.at), memory.population_now(), off
    )
    assert found == ()


def test_keys_are_stable_per_key_and_differ_across_keys() -> None:
    assert keyed(KEY, Feature.IP, "192.0.2.1") == keyed(KEY, Feature.IP, "192.0.2.1")
    assert keyed(KEY, Feature.IP, "192.0.2.1") != keyed(b"x" * 32, Feature.IP, "192.0.2.1")


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("10.0.0.1", "10.0.0.0/24"),
        ("255.255.255.255", "255.255.255.0/24"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("2001:db8:1:2::5", "2001:db8:1::/48"),
        ("2001:DB8:0001:ffff::9", "2001:db8:1::/48"),
    ],
)
def test_networks_are_the_24_or_the_48(address: str, network: str) -> None:
    from piigate.risk.evaluation.observe import network_of

    assert network_of(address) == network


@pytest.mark.parametrize(
    "address", ["192.0.2", "192.0.2.256", "192.0.02.1", "x", "1.2.3.4.5", "٣.1.1.1"]
)
def test_what_is_not_an_address_is_refused(address: str) -> None:
    from piigate.risk.evaluation.observe import network_of

    with pytest.raises(ValueError):
        network_of(address)
