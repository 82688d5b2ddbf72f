"""What the challenge endpoints answer, typed for :class:`~piigate.integrations.PiigateClient`.

Each model reads the JSON the service sends (unknown keys ignored, so a newer service still
reads) and cannot be changed once read. Times are timezone-aware ``datetime`` values (the wire
has Unix seconds). A grant's token is never part of a model's ``repr``: a log line that prints
the answer does not leak it. A decision is a :class:`~piigate.gateway.http.verdict.Verdict`, the
same the gateway works with.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from piigate.model import Action, ChallengeState

__all__ = [
    "ChallengeInfo",
    "ChallengeStatus",
    "Granted",
    "PushNumber",
    "PushSent",
    "ResourceInfo",
    "SmsSent",
    "TransactionInfo",
    "WebAuthnOptions",
]

# The members of a grant in a ``/verify`` or ``/status`` answer (``api.schemas.grant_json``).
_GRANT_KEYS = ("grant", "level", "expires_at", "amr", "single_use")


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Granted(_Answer):
    """A grant: send ``token`` back in ``PIIGate-Grant`` with the request it was obtained for."""

    token: str = Field(alias="grant", repr=False)
    level: str
    expires_at: datetime
    amr: tuple[str, ...] = ()
    # Bound to one request (``max_age: 0``): spent by the decision that uses it.
    single_use: bool = False


class ResourceInfo(_Answer):
    type: str | None = None
    id: str | None = None


class TransactionInfo(_Answer):
    amount: Decimal
    currency: str | None = None
    payee: str | None = None


class PushNumber(_Answer):
    """The number the user types on their device (number matching)."""

    number: int
    expires_at: datetime


class ChallengeInfo(_Answer):
    """``GET /v1/challenges/{id}``: what a step-up asks to approve, and its state."""

    id: str
    state: ChallengeState
    subject: str
    action: Action
    pii: tuple[str, ...] = ()
    resource: ResourceInfo = ResourceInfo()
    level: str
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None
    methods: tuple[str, ...] = ()
    bound: bool = False
    attempts_left: int
    created_at: datetime
    expires_at: datetime
    transaction: TransactionInfo | None = None
    # Only for the challenge's subject or the app that asked, while a push is open.
    push: PushNumber | None = None


class ChallengeStatus(_Answer):
    """``GET /v1/challenges/{id}/status``: the state and, after an out-of-band approval (push,
    another person), the grant, handed out once."""

    id: str
    state: ChallengeState
    grant: Granted | None = None

    @model_validator(mode="before")
    @classmethod
    def _grant_members(cls, data: Any) -> Any:
        """The grant's members are at the top level of the answer."""
        if isinstance(data, dict) and isinstance(data.get("grant"), str):
            grant = {key: data[key] for key in _GRANT_KEYS if key in data}
            return {"id": data.get("id"), "state": data.get("state"), "grant": grant}
        return data


class SmsSent(_Answer):
    """``POST /v1/challenges/{id}/sms``: where the code went (a masked number) and until when
    it is valid."""

    to: str
    expires_at: datetime


class PushSent(_Answer):
    """``POST /v1/challenges/{id}/push``: the number to show the user, and how many devices
    were sent the push (``sent`` false: one was already open, and this is it)."""

    number: int
    expires_at: datetime
    devices: int
    sent: bool


class WebAuthnOptions(_Answer):
    """``GET /v1/challenges/{id}/webauthn``: the W3C JSON request options for
    ``navigator.credentials.get({publicKey})``; the assertion goes to ``verify`` with
    method ``webauthn``."""

    public_key: dict[str, Any] = Field(alias="publicKey")
    ceremony: str
    expires_at: datetime
