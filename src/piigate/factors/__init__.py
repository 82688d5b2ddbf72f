"""Factors: one package per kind of authenticator, each with its pure protocol code
(``protocol``), the ceremony a challenge or an enrolment runs through the ports (``ceremony``) and
its adapters to the outside world (SMS providers, the push relay).

``totp``, ``recovery``, ``sms``, ``push``, ``webauthn`` and ``approval``; beside them what every
kind shares: ``lockout`` (failure back-off, pure), ``ports`` (the store and counter protocols the
ceremonies use), ``steps`` (steps the ceremonies take alike) and ``enrollment``.
"""

from __future__ import annotations

from enum import StrEnum

from piigate.factors.lockout import FailurePolicy, LockoutState, lockout_state

__all__ = [
    "FactorKind",
    "FactorState",
    "FailurePolicy",
    "LockoutState",
    "lockout_state",
]


class FactorKind(StrEnum):
    """What kind of authenticator a factor is (the ``factors.kind`` column)."""

    TOTP = "totp"
    WEBAUTHN = "webauthn"
    SMS = "sms"
    PUSH = "push"
    RECOVERY = "recovery"


class FactorState(StrEnum):
    """``pending`` until the subject proves possession once; ``disabled`` keeps history."""

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"
