"""Small login histories in the RBA format, written row by row for the evaluation tests."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from piigate.risk.evaluation.synth import HEADER

SAMPLE = "/work/shared/data/rba/rba-format-sample.csv"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.2 Mobile/15E148 Safari/604.1"
)


@dataclass(frozen=True)
class Login:
    at: str  # "2025-01-01 10:00:00"
    user: str = "42"
    ip: str = "192.0.2.10"
    country: str = "NO"
    city: str = "Oslo"
    asn: str = "64600"
    agent: str = CHROME
    ok: bool = True
    label: str = "legit"
    device: str = "dev-1"
    lat: str = "59.91"
    lon: str = "10.75"
    kind: str = ""

    def row(self, index: int) -> list[str]:
        cells = {
            "index": str(index),
            "Login Timestamp": self.at,
            "User ID": self.user,
            "Round-Trip Time [ms]": "",
            "IP Address": self.ip,
            "Country": self.country,
            "Region": "-",
            "City": self.city,
            "ASN": self.asn,
            "User Agent String": self.agent,
            "Browser Name and Version": "",
            "OS Name and Version": "",
            "Device Type": "",
            "Login Successful": str(self.ok),
            "Is Attack IP": "False",
            "Is Account Takeover": str(self.label == "attack" and self.ok),
            "Label": self.label,
            "Device ID": self.device,
            "Latitude": self.lat,
            "Longitude": self.lon,
            "Attack Type": self.kind,
        }
        return [cells[name] for name in HEADER]


def csv_text(logins: list[Login], *, header: tuple[str, ...] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for n, login in enumerate(logins):
        writer.writerow(login.row(n))
    return out.getvalue()
