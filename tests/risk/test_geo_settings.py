"""``service.risk`` and ``PIIGATE_RISK_*``: where geolocation comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from piigate.config import ConfigError, load_settings
from piigate.risk.geo_settings import DEFAULT_HOSTING_ASNS, NO_DATABASE, GeoConfigError


def config(tmp_path: Path, risk: str) -> str:
    path = tmp_path / "piigate.yaml"
    path.write_text(f"policy: policy.yaml\nservice:\n  risk:\n{risk}", encoding="utf-8")
    return str(path)


def test_defaults_are_the_bundled_city_database_and_the_hosting_list() -> None:
    settings = load_settings(None, environ={}).risk
    assert settings.city_database is None and settings.asn_database is None
    assert settings.hosting_asns == DEFAULT_HOSTING_ASNS
    assert {16509, 14061, 9009} <= DEFAULT_HOSTING_ASNS


def test_the_file_names_databases_relative_to_itself(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        "    city_database: none\n    asn_database: geo/asn.mmdb\n"
        "    anonymous_database: /srv/anon.mmdb\n    hosting_asns: [AS16509, 14061]\n",
    )
    settings = load_settings(path, environ={}).risk
    assert settings.city_database == NO_DATABASE
    assert settings.asn_database == str(tmp_path / "geo" / "asn.mmdb")
    assert settings.anonymous_database == "/srv/anon.mmdb"
    assert settings.hosting_asns == {16509, 14061}


def test_the_environment_wins(tmp_path: Path) -> None:
    path = config(tmp_path, "    asn_database: a.mmdb\n")
    env = {"PIIGATE_RISK_ASN_DATABASE": "/x/asn.mmdb", "PIIGATE_RISK_HOSTING_ASNS": "1, AS2 3"}
    settings = load_settings(path, environ=env).risk
    assert settings.asn_database == "/x/asn.mmdb" and settings.hosting_asns == {1, 2, 3}


def test_mistakes_name_the_line(tmp_path: Path) -> None:
    path = config(tmp_path, "    hosting_asns: [16509, nope]\n    colour: red\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ={})
    text = "\n".join(raised.value.errors)
    assert "unknown key 'colour'" in text or "colour" in text
    assert ":5:" in text and "hosting_asns" in text
    with pytest.raises(GeoConfigError, match="PIIGATE_RISK_HOSTING_ASNS"):
        load_settings(None, environ={"PIIGATE_RISK_HOSTING_ASNS": "16509 0"})
