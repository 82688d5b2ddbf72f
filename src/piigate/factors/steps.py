"""Steps the factor ceremonies (SMS codes, push, WebAuthn) take alike: reading a factor kind's
settings from the loaded policy, refusing a challenge that can no longer be answered, and
choosing which of a subject's factors a code or a push goes to.

Written once so that the three kinds cannot drift apart on what "still pending" or "usable"
means.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from piigate.crypto.secret import Secret
from piigate.errors import Conflict, ServiceUnavailable
from piigate.factors import FactorState
from piigate.factors.ports import FactorRecord, FactorRepo
from piigate.model import Challenge, ChallengeState, Method
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.stepup.verdicts import CheckFailed, Proof, VerificationFailure

__all__ = [
    "factor_settings",
    "proof_code",
    "require_pending",
    "seconds_left",
    "subject_counter_key",
    "usable_factors",
]


def factor_settings(policy: PolicyHolder, kind: Method) -> FactorSettings | None:
    """The loaded policy's settings for ``kind`` (None: the policy does not enable it); 503
    when no policy is loaded, so that nothing is sent or accepted under no rules at all."""
    compiled = policy.current
    if compiled is None:
        raise ServiceUnavailable("no policy is loaded")
    return compiled.policy.factors.get(kind)


def require_pending(challenge: Challenge, now: datetime) -> None:
    """409 unless ``challenge`` is pending and unexpired: nothing is sent or issued for a
    challenge that can no longer be answered."""
    if challenge.state is not ChallengeState.PENDING or challenge.expires_at <= now:
        raise Conflict("the challenge is no longer pending")


def seconds_left(challenge: Challenge, now: datetime) -> int:
    """Whole seconds ``challenge`` still lives (at least 1): nothing issued for it should
    outlive it, since it could never be used."""
    return max(1, int((challenge.expires_at - now).total_seconds()))


def subject_counter_key(prefix: str, subject_id: str) -> str:
    """A shared-counter key for a subject that does not carry the subject id in clear."""
    return f"{prefix}:" + hashlib.sha256(subject_id.encode()).hexdigest()[:32]


async def usable_factors(
    store: FactorRepo,
    subject_id: str,
    *,
    kind: str,
    factor_id: str | None,
    max_failures: int,
    none_active: str,
    all_locked: str,
) -> list[FactorRecord]:
    """The subject's active factors of ``kind`` (only ``factor_id`` when one is named) that are
    not locked, most recently confirmed first.

    409 ``none_active`` when there is no such factor, 409 ``all_locked`` when every one is
    locked after ``max_failures`` failures: its answer could not be checked anyway.
    """
    active = await store.list_factors(subject_id, kinds=[kind], states=[FactorState.ACTIVE.value])
    if factor_id is not None:
        active = [f for f in active if f.id == factor_id]
    if not active:
        raise Conflict(none_active)
    usable = [f for f in active if f.failures < max_failures]
    if not usable:
        raise Conflict(all_locked)
    return sorted(usable, key=lambda f: (f.confirmed_at or f.created_at, f.id), reverse=True)


def proof_code(proof: Proof, factors: Sequence[FactorRecord]) -> Secret[str]:
    """The code a code-based proof carries; a proof without one is malformed."""
    if proof.code is None:
        raise CheckFailed(VerificationFailure.MALFORMED, factors[0].id if factors else None)
    return proof.code
