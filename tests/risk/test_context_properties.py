"""Properties of the context signals over generated histories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from risk_support import T0, seen
from risk_support import settings as risk_settings

from piigate.risk.context import context_signals
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import Client, Observation, Place

PLACES = [
    Place("NO", "Oslo", "Oslo", 59.91, 10.75, 20.0, 2119),
    Place("NO", "Vestland", "Bergen", 60.39, 5.32, 50.0, 29695),
    Place("US", "New York", "New York", 40.71, -74.01, 20.0, 7922),
    Place("DE", "Hessen", "Frankfurt", 50.11, 8.68, 100.0, 24940, hosting=True),
    Place("SG"),
    Place(private=True),
]
CLIENTS = [
    Client("Chrome", "130", "Windows", "10", "desktop"),
    Client("Chrome", "131", "Windows", "11", "desktop"),
    Client("Firefox", "133", "Ubuntu", None, "desktop"),
    Client("Mobile Safari", "17", "iOS", "17", "mobile"),
    Client(),
]
DEVICES = ["a", "b", "c", None]
IPS = ["192.0.2.1", "192.0.2.77", "198.51.100.3", "2001:db8::1", None]
WEIGHTS = risk_settings()


@dataclass(frozen=True)
class Sighting:
    place: int
    client: int
    device: int
    ip: int

    def at(self, minutes: float) -> Observation:
        ip = IPS[self.ip]
        return seen(
            at=T0 + timedelta(minutes=minutes),
            place=PLACES[self.place],
            client=CLIENTS[self.client],
            device=DEVICES[self.device],
            ip=ip,
            network=None if ip is None else ip[:6],
        )


sightings = st.builds(
    Sighting,
    st.integers(0, len(PLACES) - 1),
    st.integers(0, len(CLIENTS) - 1),
    st.integers(0, len(DEVICES) - 1),
    st.integers(0, len(IPS) - 1),
)


def score(memory: MemoryHistory, observation: Observation) -> int:
    history = memory.history_now("ann", now=observation.at)
    found = context_signals(observation, history, memory.population_now(), WEIGHTS)
    return min(100, sum(s.weight for s in found))


@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(sightings, max_size=15),
    others=st.lists(sightings, max_size=10),
    now=sightings,
    extra=st.integers(1, 5),
    gap=st.floats(1, 60 * 24 * 30),
)
def test_more_earlier_sightings_of_the_same_values_never_raise_the_score(
    history: list[Sighting], others: list[Sighting], now: Sighting, extra: int, gap: float
) -> None:
    base, familiar = MemoryHistory(), MemoryHistory()
    for n, other in enumerate(others):
        for memory in (base, familiar):
            memory.remember_now("bob", other.at(n))
    for n, sighting in enumerate(history):
        for memory in (base, familiar):
            memory.remember_now("ann", sighting.at(60 * n))
    # The familiar history also saw this very context, earlier than anything else.
    for k in range(extra):
        familiar.remember_now("ann", now.at(-60 * (k + 1)))
    observation = now.at(60 * len(history) + gap)
    assert score(familiar, observation) <= score(base, observation)


@settings(max_examples=100, deadline=None)
@given(history=st.lists(sightings, min_size=1, max_size=15), now=sightings)
def test_a_repeated_context_scores_no_more_than_the_first_time(
    history: list[Sighting], now: Sighting
) -> None:
    memory = MemoryHistory()
    for n, sighting in enumerate(history):
        memory.remember_now("ann", sighting.at(60 * n))
    first = now.at(60 * len(history) + 600)
    before = score(memory, first)
    memory.remember_now("ann", first)
    assert score(memory, now.at(60 * len(history) + 1200)) <= before
