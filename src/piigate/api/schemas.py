"""Pydantic models of the HTTP edge (CONTRACT §4). They convert to the core with ``to_domain``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from piigate.crypto.secret import Secret
from piigate.decision_request import ContextIn, DecisionRequestIn, In, Name
from piigate.factors.ports import FactorRecord
from piigate.model import (
    Challenge,
    Decision,
    Method,
    Outcome,
)
from piigate.stepup.verdicts import IssuedGrant, Proof

__all__ = [
    "CodeIn",
    "DecisionRequestIn",
    "LoginIn",
    "SmsEnrollIn",
    "SmsSendIn",
    "TotpEnrollIn",
    "VerifyIn",
    "WebAuthnRegisterIn",
    "challenge_json",
    "decision_json",
    "factor_json",
    "grant_json",
]


class LoginIn(In):
    username: Name
    password: Annotated[str, Field(min_length=1, max_length=1024)]


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def challenge_json(challenge: Challenge, *, include_state: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": challenge.id,
        "expires_at": _epoch(challenge.expires_at),
    }
    if include_state:
        req = challenge.requirement
        body.update(
            {
                "state": challenge.state.value,
                "subject": challenge.subject_id,
                "action": challenge.action.value,
                "pii": sorted(challenge.pii),
                "resource": {"type": challenge.resource.type, "id": challenge.resource.id},
                "level": req.level,
                "acr_values": list(req.acr_values),
                "max_age": req.max_age,
                "methods": list(req.methods),
                "bound": req.binding is not None,
                "attempts_left": max(0, challenge.max_attempts - challenge.attempts),
                "created_at": _epoch(challenge.created_at),
            }
        )
        if challenge.transaction is not None:
            txn = challenge.transaction
            body["transaction"] = {
                "amount": str(txn.amount),
                "currency": txn.currency,
                "payee": txn.payee,
            }
    return body


def decision_json(decision: Decision, www_authenticate: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "decision_id": decision.id,
        "outcome": decision.outcome.value,
        "rules": list(decision.rules),
        "mask": sorted(decision.mask),
        "risk": {
            "score": decision.risk.score,
            "signals": [
                {"name": s.name, "weight": s.weight, "detail": s.detail}
                for s in decision.risk.signals
            ],
        },
    }
    req = decision.required
    if req is not None:
        body["required"] = {
            "level": req.level,
            "acr_values": list(req.acr_values),
            "max_age": req.max_age,
            "methods": list(req.methods),
            "binding": req.binding,
        }
    if decision.challenge is not None:
        body["challenge"] = challenge_json(decision.challenge)
    if decision.outcome is Outcome.DENY and decision.reason:
        body["reason"] = decision.reason
    if decision.missing_scope:
        body["missing_scope"] = list(decision.missing_scope)
    if decision.level is not None:
        body["level"] = decision.level
    if www_authenticate:
        body["www_authenticate"] = www_authenticate
    return body


# -- factors and verification (CONTRACT §4.3, §4.4) ------------------------------------------------
# Codes are bounded but not validated here: a malformed code is a failed verification (counted,
# vague 401), not a 400 that would tell a guesser which inputs are even considered.
Code = Annotated[str, Field(max_length=128)]


class TotpEnrollIn(In):
    label: Annotated[str, Field(max_length=64)] = ""


class CodeIn(In):
    code: Code


class SmsEnrollIn(In):
    # Checked by piigate.factors.sms.parse_phone, whose errors never repeat the number (Pydantic's
    # would not either, but a 422 naming what is wrong is more use than a generic 400).
    phone: Annotated[str, Field(min_length=1, max_length=64)]
    region: Annotated[str, Field(min_length=2, max_length=2)] | None = None
    label: Annotated[str, Field(max_length=64)] = ""


class SmsSendIn(In):
    factor_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class WebAuthnRegisterIn(In):
    # The PublicKeyCredential JSON from navigator.credentials.create(); verified by
    # piigate.factors.webauthn.protocol (a malformed one is a refused registration, not a 422).
    credential: dict[str, Any]
    label: Annotated[str, Field(max_length=64)] = ""


class VerifyIn(In):
    method: Annotated[str, Field(min_length=1, max_length=32)]
    code: Code | None = None
    # WebAuthn's PublicKeyCredential JSON (CONTRACT §4.3); accepted in shape, verified elsewhere.
    credential: dict[str, Any] | None = None
    # An app relaying its user's proof: the user's context, as in a decision request (the risk
    # engine learns the verified device, place and client from it). A person's own is their
    # request's.
    context: ContextIn | None = None

    def to_domain(self) -> Proof:
        return Proof(
            self.method,
            code=None if self.code is None else Secret(self.code),
            credential=self.credential,
        )


def grant_json(issued: IssuedGrant) -> dict[str, Any]:
    """A grant as handed to its holder (``/verify``, ``/status``): the token and what it says."""
    grant = issued.grant
    return {
        "grant": issued.token,
        "level": grant.level,
        "expires_at": int(grant.expires_at.timestamp()),
        "amr": list(grant.amr),
        "single_use": grant.single_use,
    }


def factor_json(factor: FactorRecord) -> dict[str, Any]:
    """A factor as listed: never its secret, hashes or counters' internals."""
    body: dict[str, Any] = {
        "id": factor.id,
        "kind": factor.kind,
        "label": factor.label,
        "state": factor.state,
        "created_at": _epoch(factor.created_at),
        "confirmed_at": _epoch(factor.confirmed_at) if factor.confirmed_at else None,
    }
    if factor.kind == Method.RECOVERY:
        hashes = factor.data.get("hashes")
        body["remaining"] = sum(1 for h in hashes if h) if isinstance(hashes, list) else 0
    if factor.kind == Method.SMS:
        body["to"] = factor.data.get("hint")  # "+1 •••-•••-••00": never the number
    if factor.kind == Method.PUSH:
        body["device"] = factor.data.get("device_name")  # the name the device gave itself
    if factor.kind == Method.WEBAUTHN:
        body["aaguid"] = factor.data.get("aaguid")  # the authenticator's model, not the person
        body["transports"] = factor.data.get("transports", [])
        body["backup_eligible"] = factor.data.get("backup_eligible", False)  # a synced passkey
    return body
