"""Distances on the Earth and the speeds between two sightings (impossible travel).

Kilometres and hours throughout: a distance is km, a duration is seconds in and hours only
inside :func:`speed_kmh`, a speed is km/h.
"""

from __future__ import annotations

import math

__all__ = ["EARTH_RADIUS_KM", "great_circle_km", "speed_kmh", "travel_km"]

# The mean Earth radius (IUGG): the haversine's sphere. Its error against the ellipsoid (< 0.5 %)
# is far below a geo database's accuracy radius.
EARTH_RADIUS_KM = 6371.0088


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle distance between two points (degrees) in km, by the haversine formula.

    The haversine stays accurate for small distances, where the spherical law of cosines loses
    digits; ``min(1, ...)`` keeps rounding from pushing antipodal points past ``asin``'s domain.
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlam = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def travel_km(distance_km: float, *, radii_km: float = 0.0, tolerance_km: float = 0.0) -> float:
    """The distance that must have been travelled at least: what the accuracy radii of both
    places and a fixed tolerance cannot explain (never negative)."""
    return max(0.0, distance_km - radii_km - tolerance_km)


def speed_kmh(distance_km: float, elapsed_seconds: float, *, min_elapsed_seconds: float) -> float:
    """The speed needed to cover ``distance_km`` in ``elapsed_seconds``, in km/h.

    The elapsed time counts as at least ``min_elapsed_seconds`` (which must be positive): two
    sightings seconds apart, or with clocks slightly out of order, would otherwise make any
    distance look like an impossible speed.
    """
    if min_elapsed_seconds <= 0:
        raise ValueError("min_elapsed_seconds must be positive")
    hours = max(elapsed_seconds, min_elapsed_seconds) / 3600.0
    return distance_km / hours
