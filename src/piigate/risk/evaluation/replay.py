"""Replaying a login history: each attempt scored only from what happened before it.

Attempts are taken in time order (the file's order among equal timestamps). Every scorer sees
the same :class:`Observation`, the subject's history and the population as they were before the
attempt; then a successful legitimate attempt enters the history (an attack or a failed attempt
never does). Attempts at the same instant do not see each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from piigate.risk.evaluation.rba import LoginRecord
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import Observation, Population, SubjectHistory

__all__ = ["Replayed", "Scored", "Scorer", "replay"]


class Scorer(Protocol):
    """One way of scoring an attempt: the engine, or a baseline. Higher is riskier."""

    name: str

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class Scored:
    """One attempt's ground truth and scores (in the scorers' order)."""

    attack: bool
    attack_type: str | None
    # The subject's successful legitimate attempts before this one.
    earlier: int
    scores: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Replayed:
    names: tuple[str, ...]
    results: tuple[Scored, ...]


async def replay(
    records: Iterable[LoginRecord],
    observe: Callable[[LoginRecord], Observation],
    scorers: Sequence[Scorer],
    *,
    memory: MemoryHistory,
    learn: Callable[[str, Observation], Awaitable[None]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Score every record with every scorer, learning as the replay goes.

    ``learn`` remembers a verified attempt (the engine's own ``remember_observation``);
    without it the attempt goes into ``memory`` directly. Scorers read ``memory``.
    """
    ordered = sorted(records, key=lambda record: record.at)
    earlier: dict[str, int] = {}
    pending: list[tuple[str, Observation]] = []
    results: list[Scored] = []
    for count, record in enumerate(ordered, 1):
        if pending and pending[0][1].at < record.at:
            for subject, seen in pending:
                if learn is None:
                    memory.remember_now(subject, seen)
                else:
                    await learn(subject, seen)
                earlier[subject] = earlier.get(subject, 0) + 1
            pending.clear()
        observation = observe(record)
        history = memory.history_now(record.user, now=record.at)
        population = memory.population_now()
        scores = tuple([await s.score(record, observation, history, population) for s in scorers])
        kind = (record.attack_type or "attack") if record.attack else None
        results.append(Scored(record.attack, kind, earlier.get(record.user, 0), scores))
        if record.successful and not record.attack:
            pending.append((record.user, observation))
        if progress is not None and count % 1000 == 0:
            progress(count)
    if progress is not None:
        progress(len(ordered))
    return Replayed(tuple(s.name for s in scorers), tuple(results))
