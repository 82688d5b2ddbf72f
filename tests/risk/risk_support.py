"""Observations, histories and settings for the risk signal tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from piigate.policy.model import RiskSettings, SignalSettings
from piigate.policy.sections import DEFAULT_SIGNALS
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import Client, Feature, Observation, Place, keyed

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = b"k" * 32
OSLO = Place("NO", "Oslo", "Oslo", 59.91, 10.75, 20.0, 2119)
BERGEN = Place("NO", "Vestland", "Bergen", 60.39, 5.32, 20.0, 2119)
NEW_YORK = Place("US", "New York", "New York", 40.71, -74.01, 20.0, 7922)
CHROME_WIN = Client("Chrome", "130", "Windows", "10", "desktop")
SAFARI_IOS = Client("Mobile Safari", "17", "iOS", "17", "mobile")


def settings(**weights: int) -> RiskSettings:
    """The default signals, with the weights given."""
    signals = {
        name: SignalSettings(weights.get(name, weight), dict(params))
        for name, (weight, params) in DEFAULT_SIGNALS.items()
    }
    return RiskSettings(signals)


def seen(
    *,
    at: datetime = T0,
    place: Place = OSLO,
    client: Client = CHROME_WIN,
    ip: str | None = "192.0.2.10",
    network: str | None = "192.0.2.0/24",
    device: str | None = "cookie-1",
) -> Observation:
    return Observation(
        at=at,
        place=place,
        client=client,
        ip_key=None if ip is None else keyed(KEY, Feature.IP, ip),
        network_key=None if network is None else keyed(KEY, Feature.NETWORK, network),
        device_key=None if device is None else keyed(KEY, Feature.DEVICE, device),
    )


def routine(subject: str = "ann", *, days: int = 20, start: datetime = T0) -> MemoryHistory:
    """A history of one login a day from Oslo, Chrome on Windows, one device, one network."""
    memory = MemoryHistory()
    for day in range(days):
        memory.remember_now(subject, seen(at=start + timedelta(days=day)))
    return memory
