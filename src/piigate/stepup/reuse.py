"""Unlock challenges named again: a masked read names the challenge the reads before it opened.

An allow that masks PII names the step-up that would unlock it, with a challenge to answer
(``PIIGate-Unlock``), and a client reading records asks the same again and again. Opening a
challenge on each such read would write a row per request and fill the store with challenges
nobody answers. So each node remembers the unlock challenges it opened, keyed by everything a
challenge binds -- its subject, session and device, who asked and for whom, the action, the
resource, the PII classes, the transaction, the requirement with its binding and the attempts
it allows -- and names one again while it is young: within the first half of its lifetime, so
that whoever receives it has at least half of it left to answer it.

Whether a remembered challenge can still be answered is not this memory's to say: it may have
been approved, denied or had its attempts spent since, on any node. The engine appends the
decision that names it only if, in the commit's transaction, it is still pending with attempts
left and unexpired (``AuditSink.append_if_open``); when not, nothing was appended, and the
engine forgets it and opens a new one. A step-up decision (the request refused until it is
answered) always opens its own.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Final

from piigate.memo import Bounded
from piigate.model import Challenge

__all__ = ["MAX_REMEMBERED", "ChallengeReuse"]

MAX_REMEMBERED: Final = 10_000

_Key = tuple[Hashable, ...]


class ChallengeReuse:
    """This node's young unlock challenges, the most recently opened ``max_remembered``."""

    def __init__(self, *, max_remembered: int = MAX_REMEMBERED) -> None:
        self._open: Bounded[_Key, Challenge] = Bounded(max_remembered)

    def named(self, fresh: Challenge, *, now: datetime) -> Challenge | None:
        """The remembered challenge that binds all that ``fresh`` binds, if it is young enough
        at ``now`` to be named again; else None."""
        key = _binds(fresh)
        found = self._open.get(key)
        if found is None:
            return None
        if now >= found.created_at + (found.expires_at - found.created_at) / 2:
            del self._open[key]
            return None
        return found

    def remember(self, challenge: Challenge) -> None:
        """``challenge`` was just opened: named again by the decisions that bind the same."""
        key = _binds(challenge)
        self._open.pop(key, None)  # put again: the newest
        self._open.put(key, challenge)

    def forget(self, challenge: Challenge) -> None:
        """``challenge`` can no longer be answered: never named again."""
        key = _binds(challenge)
        if self._open.get(key) is challenge:
            del self._open[key]


def _binds(challenge: Challenge) -> _Key:
    """Everything a challenge binds: all of it but its id, its times and its state."""
    return (
        challenge.subject_id,
        challenge.session_id,
        challenge.device_id,
        challenge.requested_by,
        challenge.audience,
        challenge.action,
        challenge.resource,
        challenge.pii,
        challenge.transaction,
        challenge.requirement,
        challenge.max_attempts,
    )
