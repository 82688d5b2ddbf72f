"""``piigate risk synth``: a labelled synthetic login history in the RBA format.

Legitimate users (``synth_legit``) and attackers (``synth_attacks``) over ``days`` days. Pure
and deterministic: the same arguments give the same rows on any machine (only
:class:`random.Random` seeded with an integer, and no iteration over sets).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from piigate.risk.evaluation.synth_attacks import ATTACK_TYPES, attacks
from piigate.risk.evaluation.synth_base import HEADER, synth_users
from piigate.risk.evaluation.synth_legit import legit_logins

__all__ = ["ATTACK_TYPES", "HEADER", "synthesize"]

# Attack attempts of each type, as a share of the legitimate attempts.
ATTACK_SHARE = 0.01


def synthesize(
    *, users: int, seed: int, days: int = 182, attack_share: float = ATTACK_SHARE
) -> Iterator[list[str]]:
    """The header row, then every login attempt in time order (``HEADER``'s columns)."""
    # A reproducible simulation, not a secret: a seeded Mersenne Twister is what it needs.
    rnd = random.Random(seed)  # noqa: S311
    people = synth_users(rnd, users, days)
    legit = {user.id: legit_logins(rnd, user, days) for user in people}
    total = sum(len(rows) for rows in legit.values())
    attempts = attacks(rnd, people, legit, days=days, count=max(1, round(total * attack_share)))
    everything = [row for rows in legit.values() for row in rows]
    everything.extend(attempts)
    # Stable: attempts at the same millisecond keep the order they were made in.
    everything.sort(key=lambda item: item[0])
    yield list(HEADER)
    for index, (_, row) in enumerate(everything):
        yield [str(index), *(row[name] for name in HEADER[1:])]
