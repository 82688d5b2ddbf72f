"""What one request shows of its context, and what a subject's verified history holds.

The risk engine never keeps a raw IP address or user agent: an :class:`Observation` carries the
place (from the geo database), the parsed client and keyed hashes of the address, its network
and the device id. The same :func:`features` turn an observation into the history's keys, so the
live engine (history in the store) and ``piigate risk eval`` (history in memory) learn and score
from exactly the same things.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = [
    "HISTORY_DAYS",
    "HISTORY_VALUES",
    "Client",
    "Feature",
    "HistoryStore",
    "LastPlace",
    "Observation",
    "Place",
    "Population",
    "Seen",
    "SubjectHistory",
    "features",
    "keyed",
]

# A history keeps, per subject and feature, the newest HISTORY_VALUES values seen within
# HISTORY_DAYS; older ones are forgotten (the store and the in-memory history alike).
HISTORY_VALUES = 100
HISTORY_DAYS = 180


class Feature(StrEnum):
    """A kind of value the history counts per subject (and the population over all subjects)."""

    DEVICE = "device"  # keyed hash of the device id (cookie or PIIGate-Device)
    IP = "ip"  # keyed hash of the address
    NETWORK = "network"  # keyed hash of its /24 (IPv4) or /48 (IPv6)
    COUNTRY = "country"  # ISO 3166-1 alpha-2
    REGION = "region"  # "country/region"
    CITY = "city"  # "country/region/city"
    ASN = "asn"  # "AS64500"
    BROWSER = "browser"  # family: "Chrome"
    BROWSER_VERSION = "browser_version"  # "Chrome 131"
    OS = "os"  # family: "Windows"
    OS_VERSION = "os_version"  # "Windows 10"
    DEVICE_TYPE = "device_type"  # desktop | mobile | tablet | bot | other
    CLIENT = "client"  # "Chrome/Windows/desktop": the combination


@dataclass(frozen=True, slots=True)
class Place:
    """Where an address is, as far as the geo database knows (every part may be unknown)."""

    country: str | None = None
    region: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    # Accuracy radius of the coordinates in km, when the database gives one.
    radius_km: float | None = None
    asn: int | None = None
    # A hosting, datacenter, VPN or anonymising network.
    hosting: bool = False
    # Loopback, private, link-local or otherwise non-routable: no geography at all.
    private: bool = False

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass(frozen=True, slots=True)
class Client:
    """A user agent parsed into families and major versions (``risk.clients``)."""

    browser: str | None = None
    browser_major: str | None = None
    os: str | None = None
    os_major: str | None = None
    device_type: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One request's context, with no raw address, user agent or device id."""

    at: datetime
    place: Place = Place()
    client: Client = Client()
    ip_key: str | None = None
    network_key: str | None = None
    device_key: str | None = None


def keyed(key: bytes, kind: Feature, value: str) -> str:
    """A keyed hash of ``value``: stable for one deployment, useless without its key."""
    mac = hmac.new(key, f"{kind.value}\x00{value}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def features(observation: Observation) -> dict[Feature, str]:
    """The history keys of one observation (what is unknown is left out)."""
    found: dict[Feature, str] = {}
    if observation.device_key:
        found[Feature.DEVICE] = observation.device_key
    if observation.ip_key:
        found[Feature.IP] = observation.ip_key
    if observation.network_key:
        found[Feature.NETWORK] = observation.network_key
    place = observation.place
    if place.country:
        found[Feature.COUNTRY] = place.country
        if place.region:
            found[Feature.REGION] = f"{place.country}/{place.region}"
            if place.city:
                found[Feature.CITY] = f"{place.country}/{place.region}/{place.city}"
    if place.asn is not None:
        found[Feature.ASN] = f"AS{place.asn}"
    client = observation.client
    if client.browser:
        found[Feature.BROWSER] = client.browser
        if client.browser_major:
            found[Feature.BROWSER_VERSION] = f"{client.browser} {client.browser_major}"
    if client.os:
        found[Feature.OS] = client.os
        if client.os_major:
            found[Feature.OS_VERSION] = f"{client.os} {client.os_major}"
    if client.device_type:
        found[Feature.DEVICE_TYPE] = client.device_type
    if client.browser or client.os:
        combo = f"{client.browser or '?'}/{client.os or '?'}/{client.device_type or '?'}"
        found[Feature.CLIENT] = combo
    return found


@dataclass(frozen=True, slots=True)
class Seen:
    count: int
    last_at: datetime


@dataclass(frozen=True, slots=True)
class LastPlace:
    """Where and when the subject's latest located verified activity was (impossible travel)."""

    at: datetime
    latitude: float
    longitude: float
    radius_km: float | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class SubjectHistory:
    """A subject's successful, verified activity: bounded per feature (newest values kept)."""

    verified: int = 0
    values: Mapping[Feature, Mapping[str, Seen]] = field(default_factory=dict)
    last_place: LastPlace | None = None

    def seen(self, kind: Feature, value: str) -> int:
        entry = self.values.get(kind, {}).get(value)
        return 0 if entry is None else entry.count

    def total(self, kind: Feature) -> int:
        return sum(entry.count for entry in self.values.get(kind, {}).values())


@dataclass(frozen=True, slots=True)
class Population:
    """Verified activity over all subjects: how common each value is (Freeman's p(x))."""

    verified: int = 0
    values: Mapping[Feature, Mapping[str, int]] = field(default_factory=dict)

    def count(self, kind: Feature, value: str) -> int:
        return self.values.get(kind, {}).get(value, 0)


class HistoryStore(Protocol):
    """Where histories live: the store (``store.risk_history``) or memory (``risk eval``)."""

    async def history(self, subject_id: str, *, now: datetime) -> SubjectHistory: ...

    async def population(self, *, now: datetime) -> Population: ...

    async def remember(self, subject_id: str, observation: Observation) -> None: ...
