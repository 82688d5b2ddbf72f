"""The login-history CSV format of the public RBA data set (Wiefling et al., ACM TOPS 2022).

Columns (the leading ``index`` column is optional): ``Login Timestamp, User ID, Round-Trip Time
[ms], IP Address, Country, Region, City, ASN, User Agent String, Browser Name and Version, OS
Name and Version, Device Type, Login Successful, Is Attack IP, Is Account Takeover``; optional:
``Label`` (``attack``/``legit``), and what ``piigate risk synth`` adds: ``Device ID``
(the device cookie the login presented; empty for none), ``Latitude``, ``Longitude`` (degrees)
and ``Attack Type``. Other columns are ignored. ``-`` or an empty cell is an unknown value.

Ground truth: ``Label`` when the file has it, otherwise ``Is Account Takeover`` or ``Is Attack
IP``. A malformed row is an :class:`RbaFormatError` naming ``FILE:LINE`` and the column, never
its value (it may be an address or a user agent).
"""

from __future__ import annotations

import csv
import functools
import ipaddress
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from piigate.errors import PiigateError

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "LoginRecord",
    "RbaFormatError",
    "read_rba",
]

COLUMNS: Final = (
    "Login Timestamp",
    "User ID",
    "Round-Trip Time [ms]",
    "IP Address",
    "Country",
    "Region",
    "City",
    "ASN",
    "User Agent String",
    "Browser Name and Version",
    "OS Name and Version",
    "Device Type",
    "Login Successful",
    "Is Attack IP",
    "Is Account Takeover",
)
EXTRA_COLUMNS: Final = ("Label", "Device ID", "Latitude", "Longitude", "Attack Type")
_BOOLEANS: Final = {"true": True, "false": False, "1": True, "0": False}
_LABELS: Final = {"attack": True, "legit": False}
_UNKNOWN: Final = frozenset({"", "-"})


class RbaFormatError(PiigateError):
    """A login history that cannot be read: one line, ``FILE:LINE: column 'X': why``."""

    status = 400
    code = "invalid_login_history"
    title = "Invalid login history"


@dataclass(frozen=True, slots=True)
class LoginRecord:
    """One login attempt of the file."""

    line: int
    at: datetime
    user: str
    ip: str
    country: str | None
    region: str | None
    city: str | None
    asn: int | None
    user_agent: str
    successful: bool
    attack: bool
    attack_type: str | None = None
    device: str | None = None
    latitude: float | None = None
    longitude: float | None = None


def read_rba(lines: Iterable[str], *, source: str) -> Iterator[LoginRecord]:
    """The records of an RBA-format CSV, in file order (``source`` names the file in errors)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise RbaFormatError(f"{source}:1: empty file (expected a header row)")
    columns = {name.strip(): n for n, name in enumerate(header)}
    missing = [name for name in COLUMNS if name not in columns]
    if missing:
        raise RbaFormatError(f"{source}:1: missing column {missing[0]!r}")
    labelled = "Label" in columns
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise RbaFormatError(
                f"{source}:{reader.line_num}: {len(row)} fields, the header has {len(header)}"
            )
        yield _record(row, columns, reader.line_num, source, labelled=labelled)


class _Row:
    """One row's cells by column name, each read with the line and column in its errors."""

    def __init__(self, row: list[str], columns: dict[str, int], line: int, source: str) -> None:
        self.row, self.columns, self.line, self.source = row, columns, line, source

    def text(self, name: str) -> str | None:
        index = self.columns.get(name)
        if index is None:
            return None
        value = self.row[index].strip()
        return None if value in _UNKNOWN else value

    def fail(self, name: str, why: str) -> RbaFormatError:
        return RbaFormatError(f"{self.source}:{self.line}: column {name!r}: {why}")

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise self.fail(name, "missing value")
        return value

    def flag(self, name: str, choices: dict[str, bool] = _BOOLEANS) -> bool:
        value = self.required(name).lower()
        if value not in choices:
            raise self.fail(name, f"expected one of {', '.join(choices)}")
        return choices[value]

    def number(self, name: str, low: float, high: float) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            parsed = float(value)
        except ValueError:
            raise self.fail(name, "not a number") from None
        if not math.isfinite(parsed) or not low <= parsed <= high:
            raise self.fail(name, f"out of range ({low:g} to {high:g})")
        return parsed


def _record(
    row: list[str], columns: dict[str, int], line: int, source: str, *, labelled: bool
) -> LoginRecord:
    cells = _Row(row, columns, line, source)
    at = _timestamp(cells)
    ip = cells.required("IP Address")
    if not _is_address(ip):
        raise cells.fail("IP Address", "not an IP address")
    asn = cells.number("ASN", 0, 4294967295)
    if asn is not None and not asn.is_integer():
        raise cells.fail("ASN", "not an integer")
    if labelled:
        attack = cells.flag("Label", _LABELS)
    else:
        attack = cells.flag("Is Account Takeover") or cells.flag("Is Attack IP")
    return LoginRecord(
        line=line,
        at=at,
        user=cells.required("User ID"),
        ip=ip,
        country=cells.text("Country"),
        region=cells.text("Region"),
        city=cells.text("City"),
        asn=None if asn is None else int(asn),
        user_agent=cells.text("User Agent String") or "",
        successful=cells.flag("Login Successful"),
        attack=attack,
        attack_type=cells.text("Attack Type"),
        device=cells.text("Device ID"),
        latitude=cells.number("Latitude", -90, 90),
        longitude=cells.number("Longitude", -180, 180),
    )


@functools.lru_cache(maxsize=65_536)
def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _timestamp(cells: _Row) -> datetime:
    value = cells.required("Login Timestamp")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise cells.fail("Login Timestamp", "not a timestamp (YYYY-MM-DD HH:MM:SS[.fff])") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
