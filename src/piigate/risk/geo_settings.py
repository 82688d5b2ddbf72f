"""Where the risk engine's geolocation comes from: the ``service.risk`` section of the
configuration file and the ``PIIGATE_RISK_*`` environment variables (read by ``piigate.config``).

```yaml
service:
  risk:
    city_database: /var/lib/geo/GeoLite2-City.mmdb      # default: DB-IP City Lite (bundled)
    asn_database: /var/lib/geo/GeoLite2-ASN.mmdb        # new_asn and hosting need one
    anonymous_database: /var/lib/geo/GeoIP2-Anonymous-IP.mmdb
    hosting_asns: [16509, 14061]                        # replaces the default list
```

``city_database: none`` turns geolocation off (no country, no travel). The signal weights and
limits are the policy's (its ``risk:`` section); these are only where the data comes from.
Relative paths are read from the configuration file's directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import yaml

from piigate.errors import PolicyError
from piigate.policy.yamlnodes import NodeReader

__all__ = [
    "DEFAULT_HOSTING_ASNS",
    "ENV_VARS",
    "GEO_KEYS",
    "NO_DATABASE",
    "GeoConfigError",
    "GeoSettings",
    "geo_from_env",
    "geo_from_yaml",
]

# ``city_database: none``: no geolocation at all.
NO_DATABASE: Final = "none"

# Networks of cloud providers and of the hosters VPN services rent from: a person's browser
# rarely comes from them, an attacker's tooling (and a VPN exit) often does. Without an ASN
# database no address has an ASN, so this list is only used with one.
DEFAULT_HOSTING_ASNS: Final = frozenset(
    {
        16509, 14618, 8987,  # Amazon (AWS)
        396982, 19527,  # Google Cloud
        8075, 8068, 8069,  # Microsoft (Azure)
        31898,  # Oracle Cloud
        36351,  # IBM Cloud (SoftLayer)
        45102, 37963,  # Alibaba Cloud
        132203,  # Tencent Cloud
        14061,  # DigitalOcean
        63949,  # Akamai (Linode)
        20473,  # Vultr (Choopa)
        16276,  # OVH
        24940, 213230,  # Hetzner
        12876,  # Scaleway
        51167,  # Contabo
        60781, 28753, 16265,  # Leaseweb
        9009,  # M247 (many VPN exits)
        60068,  # Datacamp / CDN77 (many VPN exits)
        62240,  # Clouvider
        39351,  # 31173 Services (Mullvad)
        53667,  # FranTech (BuyVM)
        36352,  # ColoCrossing
        8100,  # QuadraNet
        40676,  # Psychz
        46844,  # Sharktech
        13335,  # Cloudflare (WARP)
    }
)  # fmt: skip


class GeoConfigError(PolicyError):
    """The risk settings, or a database they name, cannot be used (one line each, no values)."""

    code = "config_invalid"
    title = "Invalid configuration"


@dataclass(frozen=True, slots=True)
class GeoSettings:
    # None: the bundled DB-IP City Lite database; NO_DATABASE: no geolocation.
    city_database: str | None = None
    asn_database: str | None = None
    anonymous_database: str | None = None
    hosting_asns: frozenset[int] = DEFAULT_HOSTING_ASNS


# YAML key → environment variable.
_FIELDS: Final[Mapping[str, str]] = {
    "city_database": "PIIGATE_RISK_CITY_DATABASE",
    "asn_database": "PIIGATE_RISK_ASN_DATABASE",
    "anonymous_database": "PIIGATE_RISK_ANONYMOUS_DATABASE",
    "hosting_asns": "PIIGATE_RISK_HOSTING_ASNS",
}
GEO_KEYS: Final = frozenset(_FIELDS)
ENV_VARS: Final = tuple(_FIELDS.values())
_PATHS: Final = ("city_database", "asn_database", "anonymous_database")


def geo_from_yaml(read: NodeReader, node: yaml.Node, base: Path) -> GeoSettings | None:
    """The ``service.risk`` mapping (paths relative to ``base``); errors go to ``read.errors``
    with their line."""
    spec = read.mapping(node, "risk", GEO_KEYS)
    if spec is None:
        return None
    values: dict[str, object] = {}
    for key in _PATHS:
        if key in spec:
            text = read.string(spec[key][1], f"risk.{key}")
            if text is not None:
                values[key] = _path(text, base)
    if "hosting_asns" in spec:
        asns = _yaml_asns(read, spec["hosting_asns"][1])
        if asns is not None:
            values["hosting_asns"] = asns
    return replace(GeoSettings(), **values)  # type: ignore[arg-type]


def geo_from_env(settings: GeoSettings, env: Mapping[str, str]) -> GeoSettings:
    """``settings`` with the environment's values on top. Raises :class:`GeoConfigError`."""
    values: dict[str, object] = {}
    for key in _PATHS:
        text = env.get(_FIELDS[key], "").strip()
        if text:
            values[key] = text
    text = env.get(_FIELDS["hosting_asns"], "")
    if text.strip():
        try:
            values["hosting_asns"] = frozenset(
                _asn(part) for part in text.replace(",", " ").split()
            )
        except ValueError as exc:
            raise GeoConfigError([f"{_FIELDS['hosting_asns']}: {exc}"]) from None
    return replace(settings, **values)  # type: ignore[arg-type]


def _path(text: str, base: Path) -> str:
    if text.strip().lower() == NO_DATABASE:
        return NO_DATABASE
    return str(base / text)


def _yaml_asns(read: NodeReader, node: yaml.Node) -> frozenset[int] | None:
    if not isinstance(node, yaml.SequenceNode):
        read.errors.at(node, "risk.hosting_asns must be a list of AS numbers")
        return None
    found: set[int] = set()
    for item in node.value:
        try:
            found.add(_asn(str(item.value) if isinstance(item, yaml.ScalarNode) else ""))
        except ValueError as exc:
            read.errors.at(item, f"risk.hosting_asns: {exc}")
    return frozenset(found)


def _asn(text: str) -> int:
    """``16509`` or ``AS16509``."""
    digits = text.strip().upper().removeprefix("AS")
    if not digits.isdigit() or not 0 < int(digits) < 2**32:
        raise ValueError("an AS number is 1 to 4294967295, e.g. 16509 or AS16509")
    return int(digits)
