"""Great-circle distances in km and speeds in km/h."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.risk.geodesy import EARTH_RADIUS_KM, great_circle_km, speed_kmh, travel_km


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        ((59.9139, 10.7522), (60.3913, 5.3221), 305),  # Oslo - Bergen
        ((51.5074, -0.1278), (48.8566, 2.3522), 344),  # London - Paris
        ((40.7128, -74.0060), (51.5074, -0.1278), 5570),  # New York - London
        ((-33.8688, 151.2093), (59.9139, 10.7522), 15950),  # Sydney - Oslo
    ],
)
def test_known_distances_within_half_a_percent(
    a: tuple[float, float], b: tuple[float, float], km: float
) -> None:
    assert great_circle_km(*a, *b) == pytest.approx(km, rel=0.005)


def test_antipodes_are_half_the_circumference() -> None:
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert great_circle_km(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_KM)


def test_one_degree_of_longitude_shrinks_with_latitude() -> None:
    assert great_circle_km(0, 0, 0, 1) == pytest.approx(111.2, abs=0.1)
    assert great_circle_km(60, 0, 60, 1) == pytest.approx(55.6, abs=0.1)


coordinates = st.tuples(st.floats(-90, 90, allow_nan=False), st.floats(-180, 180, allow_nan=False))


@given(coordinates, coordinates)
def test_distance_is_symmetric_and_bounded(a: tuple[float, float], b: tuple[float, float]) -> None:
    there = great_circle_km(*a, *b)
    assert there == pytest.approx(great_circle_km(*b, *a), abs=1e-6)
    assert 0 <= there <= math.pi * EARTH_RADIUS_KM + 1e-6


def test_speed_is_km_per_hour() -> None:
    assert speed_kmh(900, 3600, min_elapsed_seconds=300) == pytest.approx(900)
    assert speed_kmh(250, 1800, min_elapsed_seconds=300) == pytest.approx(500)
    assert speed_kmh(0, 60, min_elapsed_seconds=300) == 0


def test_short_or_negative_intervals_count_as_the_minimum() -> None:
    # 100 km seconds apart (or with the clocks out of order) counts as 100 km in 5 minutes.
    assert speed_kmh(100, 2, min_elapsed_seconds=300) == pytest.approx(1200)
    assert speed_kmh(100, -60, min_elapsed_seconds=300) == pytest.approx(1200)
    with pytest.raises(ValueError, match="positive"):
        speed_kmh(100, 60, min_elapsed_seconds=0)


def test_travel_leaves_out_what_the_radii_and_the_tolerance_explain() -> None:
    assert travel_km(300, radii_km=50, tolerance_km=100) == 150
    assert travel_km(120, radii_km=50, tolerance_km=100) == 0
