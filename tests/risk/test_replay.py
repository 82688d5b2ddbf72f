"""The replay: time order, each attempt scored from earlier data only, history learnt from
successful legitimate attempts only, and the metrics of a tiny hand-made history."""

from __future__ import annotations

import asyncio
import io

from rba_support import SAFARI, Login, csv_text
from risk_support import settings

from piigate.risk.clients import ClientParser
from piigate.risk.evaluation.observe import RecordObserver
from piigate.risk.evaluation.rba import LoginRecord, read_rba
from piigate.risk.evaluation.replay import Replayed, Scorer, replay
from piigate.risk.evaluation.report import report
from piigate.risk.evaluation.scorers import (
    Always,
    ContextScorer,
    Freeman,
    Never,
    NewCountryOrBrowser,
)
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import Observation, Population, SubjectHistory


class Verified:
    """Scores each attempt by how many verified attempts its subject had before it."""

    name = "verified"

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float:
        return float(history.verified)


def run(logins: list[Login], *scorers: Scorer, devices: bool = True) -> Replayed:
    records = read_rba(io.StringIO(csv_text(logins)), source="t.csv")
    observer = RecordObserver(
        key=b"k" * 32, clients=ClientParser().parse, hosting_asns=frozenset({9009}), devices=devices
    )
    return asyncio.run(replay(records, observer.observe, scorers, memory=MemoryHistory()))


def test_time_order_and_learning_only_from_successful_legitimate_attempts() -> None:
    logins = [
        Login("2025-01-01 10:00:03"),  # listed first, happens third
        Login("2025-01-01 10:00:01", label="attack", kind="naive"),  # an attack: not learnt
        Login("2025-01-01 10:00:02", ok=False),  # failed: not learnt
        Login("2025-01-01 10:00:04"),
        Login("2025-01-01 10:00:04"),  # the same instant: does not see the one before
        Login("2025-01-01 10:00:05"),
        Login("2025-01-01 10:00:05", user="7"),  # another subject
    ]
    replayed = run(logins, Verified())
    assert [r.scores[0] for r in replayed.results] == [0, 0, 0, 1, 1, 3, 0]
    assert [r.earlier for r in replayed.results] == [0, 0, 0, 1, 1, 3, 0]
    assert [r.attack_type for r in replayed.results] == ["naive", *[None] * 6]


def test_a_tiny_history_with_a_known_auc() -> None:
    home = [Login(f"2025-01-{day:02d} 10:00:00") for day in range(1, 15)]
    attacks = [
        # Another country, network, browser and device: everything is new.
        Login("2025-01-15 09:00:00", ip="203.0.113.9", country="US", city="Ashburn",
              asn="9009", agent=SAFARI, device="evil", lat="39.04", lon="-77.49",
              label="attack", kind="vpn"),
        # The victim's own address and browser, another device: only the device is new.
        Login("2025-01-15 09:30:00", device="evil-2", label="attack", kind="replay"),
    ]  # fmt: skip
    legit_new_device = Login("2025-01-15 12:00:00", device="dev-2")
    replayed = run([*home, *attacks, legit_new_device], ContextScorer(settings()), Never())
    data = report(replayed, threshold=60)
    scores = [r.scores[0] for r in replayed.results]
    # The first attempt has no history; then routine logins score 0.
    assert scores[:14] == [20.0] + [0.0] * 13
    vpn, replay_score, new_device = scores[14:]
    assert vpn == 100 and replay_score == new_device == 28  # 30 x 14/15
    # The VPN attack beats all 15 legitimate attempts; the replay beats 14 and ties the new
    # device: (15 + 14.5) / (2 x 15).
    assert data["auc"] == 29.5 / 30
    assert data["logins"] == 17 and data["attacks"] == 2
    assert data["detection_rate"] == 0.5 and data["stepup_rate_legit"] == 0.0
    assert data["by_attack_type"]["vpn"]["detection_rate"] == 1.0
    assert data["by_attack_type"]["replay"]["detection_rate"] == 0.0
    at_25 = next(row for row in data["by_threshold"] if row["score"] == 25)
    assert at_25 == {"score": 25, "stepup_rate_legit": 1 / 15, "detection_rate": 1.0}
    assert data["baselines"]["never"]["auc"] == 0.5


def test_without_devices_the_replay_attacker_is_invisible() -> None:
    home = [Login(f"2025-01-{day:02d} 10:00:00") for day in range(1, 15)]
    replay_attack = Login("2025-01-15 09:30:00", device="evil", label="attack", kind="replay")
    replayed = run([*home, replay_attack], ContextScorer(settings()), devices=False)
    assert replayed.results[-1].scores[0] == 0


def test_the_baselines() -> None:
    # Others, from elsewhere, make the population Freeman's model compares with.
    others = [
        Login(f"2024-12-{day:02d} 10:00:00", user=f"u{n}", country=country, asn=f"6460{n}",
              ip=f"198.51.{n}.{day}", agent=SAFARI if n % 2 else Login.agent)
        for n, country in enumerate(["SE", "DK", "NO", "DE"]) for day in range(1, 11)
    ]  # fmt: skip
    home = [Login(f"2025-01-{day:02d} 10:00:00") for day in range(1, 6)]
    away = Login("2025-01-06 10:00:00", country="DE", city="Berlin", asn="64603",
                 ip="203.0.113.1")  # fmt: skip
    phone = Login("2025-01-07 10:00:00", agent=SAFARI)
    replayed = run([*others, *home, away, phone], Always(), NewCountryOrBrowser(), Freeman())
    always, rule, freeman = zip(*(r.scores for r in replayed.results[40:]), strict=True)
    assert set(always) == {1.0}
    assert rule == (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0)
    assert freeman[0] == 0.0  # no history: every ratio is 1
    assert freeman[5] > freeman[4] + 1 and freeman[6] > freeman[4] + 1
