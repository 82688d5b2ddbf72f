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
    "CeremonyPurpose",
    "CeremonyState",
    "FactorState",
    "FailurePolicy",
    "LockoutState",
    "lockout_state",
]


class FactorState(StrEnum):
    """``pending`` until the subject proves possession once; ``disabled`` keeps history."""

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"


class CeremonyPurpose(StrEnum):
    """What a ``ceremonies`` row is for: a single-use secret or message a factor kind keeps in the
    store while a step-up or an enrolment is under way (the ``ceremonies.purpose`` column)."""

    WEBAUTHN_REGISTER = "webauthn_register"  # the random challenge of a registration
    WEBAUTHN_AUTH = "webauthn_auth"  # the challenge derived from a step-up's binding
    SMS_CODE = "sms_code"  # a code sent for a challenge
    SMS_ENROLL = "sms_enroll"  # a code sent to confirm a new phone
    SMS_OUTBOX = "sms_outbox"  # a message kept by the outbox adapter
    SMS_NUMBER_KEY = "sms_number_key"  # the HMAC key numbers are counted under (one row)
    RISK_KEY = "risk_key"  # the HMAC key of the risk engine's history and counters (one row)
    PUSH = "push"  # a push sent to the subject's devices, with its number
    PUSH_ENROLL = "push_enroll"  # the one-time token a device enrols with
    LOGIN_TICKET = "login_ticket"  # a login waiting for its step-up (``identity.tickets``)
    # The subject reported one of their events as not theirs (``risk.reports``): evidence of the
    # ``reported_activity`` risk signal, kept for its window.
    REPORTED_ACTIVITY = "reported_activity"


class CeremonyState(StrEnum):
    """``open`` until closed once, by compare-and-set, in one of the other states."""

    OPEN = "open"
    USED = "used"  # spent by the answer it was made for
    APPROVED = "approved"  # a push the device approved
    DENIED = "denied"  # a push the device denied
    EXPIRED = "expired"  # past its lifetime, or voided by a newer one
