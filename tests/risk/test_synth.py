"""The synthetic login history: deterministic per seed, readable by the RBA reader, with every
attacker type, and legitimate behaviour that looks like people's."""

from __future__ import annotations

import csv
import io
from collections import Counter

import pytest

from piigate.risk.evaluation.rba import read_rba
from piigate.risk.evaluation.synth import ATTACK_TYPES, HEADER, synthesize


def text(users: int, seed: int, days: int = 60) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(synthesize(users=users, seed=seed, days=days))
    return out.getvalue()


@pytest.fixture(scope="module")
def history() -> str:
    return text(40, 7)


def test_the_same_seed_gives_the_same_file_and_another_seed_another(history: str) -> None:
    assert text(40, 7) == history
    assert text(40, 8) != history


def test_it_reads_back_in_time_order_with_every_attacker_type(history: str) -> None:
    assert history.splitlines()[0] == ",".join(HEADER)
    records = list(read_rba(io.StringIO(history), source="synth.csv"))
    assert [r.at for r in records] == sorted(r.at for r in records)
    kinds = Counter(r.attack_type for r in records if r.attack)
    assert set(kinds) == set(ATTACK_TYPES)
    legit = [r for r in records if not r.attack]
    assert all(r.attack_type is None for r in legit)
    # A few percent of attacks in all.
    assert 0.02 < sum(kinds.values()) / len(records) < 0.15
    assert len({r.user for r in legit}) <= 40


def test_legitimate_users_mostly_repeat_themselves(history: str) -> None:
    records = [r for r in read_rba(io.StringIO(history), source="s") if not r.attack]
    by_user: dict[str, list] = {}  # type: ignore[type-arg]
    for record in records:
        by_user.setdefault(record.user, []).append(record)
    busy = [rows for rows in by_user.values() if len(rows) >= 20]
    assert busy
    for rows in busy:
        countries = Counter(r.country for r in rows)
        devices = Counter(r.device for r in rows)
        assert countries.most_common(1)[0][1] / len(rows) > 0.6
        assert len(devices) < len(rows) / 2
    # Failed attempts (typos) exist but are rare.
    failed = sum(1 for r in records if not r.successful)
    assert 0 < failed / len(records) < 0.1


def test_the_replay_attacker_copies_the_victim_but_not_the_cookie(history: str) -> None:
    records = list(read_rba(io.StringIO(history), source="s"))
    for attack in (r for r in records if r.attack_type == "replay"):
        earlier = [
            r for r in records
            if r.user == attack.user and not r.attack and r.successful and r.at < attack.at
            and r.ip == attack.ip and r.user_agent == attack.user_agent
        ]  # fmt: skip
        assert earlier
        assert attack.device not in {r.device for r in earlier}
