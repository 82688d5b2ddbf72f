"""IP geolocation from MaxMind DB files: city, ASN, anonymous networks, the hosting list, what
has no geography, failures at start and at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from geo_support import ANON, ASN, CITY, write_db

from piigate.logs import redact_text
from piigate.risk.geo import GeoLookupError, MaxMindLocator, bundled_city_database, open_locator
from piigate.risk.geo_settings import NO_DATABASE, GeoConfigError, GeoSettings
from piigate.risk.observation import Place


@pytest.fixture
def dbs(tmp_path: Path) -> dict[str, str]:
    return {
        "city": str(write_db(tmp_path / "city.mmdb", CITY, kind="GeoIP2-City")),
        "asn": str(write_db(tmp_path / "asn.mmdb", ASN, kind="GeoLite2-ASN")),
        "anon": str(write_db(tmp_path / "anon.mmdb", ANON, kind="GeoIP2-Anonymous-IP")),
    }


@pytest.fixture
def locator(dbs: dict[str, str]) -> MaxMindLocator:
    return open_locator(
        GeoSettings(
            city_database=dbs["city"],
            asn_database=dbs["asn"],
            anonymous_database=dbs["anon"],
            hosting_asns=frozenset({16509}),
        )
    )


def test_city_and_asn(locator: MaxMindLocator) -> None:
    place = locator.locate("81.2.69.160")
    assert place == Place(
        country="GB",
        region="England",
        city="London",
        latitude=51.5142,
        longitude=-0.0931,
        radius_km=10.0,
        asn=20712,
    )
    assert place.located and not place.hosting and not place.private


def test_ipv6_and_ipv4_written_as_ipv6(locator: MaxMindLocator) -> None:
    tokyo = locator.locate("2001:218:1::7")
    assert (tokyo.country, tokyo.city, tokyo.asn) == ("JP", "Tokyo", 2914)
    assert locator.locate("::ffff:81.2.69.160").city == "London"


def test_hosting_by_asn_list_and_by_anonymous_database(locator: MaxMindLocator) -> None:
    aws = locator.locate("54.240.1.1")
    assert aws == Place(asn=16509, hosting=True)  # no city record: only the network
    vpn = locator.locate("175.16.199.5")
    assert vpn.hosting and vpn.country == "CN" and vpn.asn is None
    assert not locator.locate("89.160.20.128").hosting


NON_ROUTABLE = ["127.0.0.1", "10.1.2.3", "192.168.0.9", "172.16.5.4", "169.254.1.1", "100.64.0.1"]
NON_ROUTABLE += [
    "::1",
    "fe80::1",
    "fd00::1",
    "0.0.0.0",
    "240.0.0.1",
    "203.0.113.7",
    "::ffff:10.0.0.1",
]


@pytest.mark.parametrize("ip", NON_ROUTABLE)
def test_non_routable_addresses_have_no_geography(locator: MaxMindLocator, ip: str) -> None:
    assert locator.locate(ip) == Place(private=True)


@pytest.mark.parametrize("ip", ["not-an-ip", "", "999.1.1.1", "8.8.8.8", "2a00:1450::1"])
def test_invalid_or_unknown_addresses_are_unknown(locator: MaxMindLocator, ip: str) -> None:
    assert locator.locate(ip) == Place()


def test_an_ipv4_only_database_leaves_ipv6_unknown(tmp_path: Path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"autonomous_system_number": 20712})
    writer.to_db_file(str(tmp_path / "v4.mmdb"))
    locator = open_locator(
        GeoSettings(city_database=NO_DATABASE, asn_database=str(tmp_path / "v4.mmdb"))
    )
    assert locator.locate("81.2.69.1") == Place(asn=20712)
    assert locator.locate("2001:218:1::7") == Place()


def test_an_unreadable_database_stops_the_start(tmp_path: Path, dbs: dict[str, str]) -> None:
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a database")
    for settings, role in [
        (GeoSettings(city_database=str(tmp_path / "missing.mmdb")), "city"),
        (GeoSettings(city_database=dbs["city"], asn_database=str(garbage)), "asn"),
        (GeoSettings(anonymous_database=str(garbage)), "anonymous"),
    ]:
        with pytest.raises(GeoConfigError) as raised:
            open_locator(settings)
        assert len(raised.value.errors) == 1
        assert raised.value.errors[0].startswith(f"risk.{role}_database: cannot read ")


def test_a_database_failing_at_run_time_raises(locator: MaxMindLocator) -> None:
    assert locator.locate("81.2.69.160").city == "London"  # cached from here on
    locator.close()
    assert locator.locate("81.2.69.160").city == "London"
    with pytest.raises(GeoLookupError) as raised:
        locator.locate("89.160.20.1")
    assert "89.160" not in str(raised.value)


def test_start_up_line_names_the_databases_and_what_needs_an_asn_database(
    dbs: dict[str, str],
) -> None:
    with structlog.testing.capture_logs() as logs:
        open_locator(GeoSettings(city_database=dbs["city"]))
        open_locator(GeoSettings(city_database=dbs["city"], asn_database=dbs["asn"]))
    without, with_asn = logs
    assert without["event"] == "geo_databases" and without["log_level"] == "warning"
    assert "GeoIP2-City" in without["city"] and without["asn"] is None
    assert "new_asn" in without["note"] and "PIIGATE_RISK_ASN_DATABASE" in without["note"]
    assert with_asn["log_level"] == "info" and "GeoLite2-ASN" in with_asn["asn"]


def test_the_bundled_database_locates_out_of_the_box() -> None:
    path = bundled_city_database()
    assert path is not None
    locator = open_locator(GeoSettings())
    assert locator.describe()["city"] is not None
    described = str(locator.describe()["city"])
    assert "DBIP-City-Lite" in described
    assert redact_text(described) == described  # the start-up line reads whole in the log
    sydney = locator.locate("1.1.1.1")
    assert sydney.country == "AU" and sydney.located
    assert locator.locate("2a00:1450:4001:80e::200e").country == "DE"
