"""Pydantic models of the HTTP edge (CONTRACT §4). They convert to the core with ``to_domain``."""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from piigate.crypto.secret import Secret
from piigate.errors import BadRequest
from piigate.factors.ports import FactorRecord
from piigate.model import (
    AccessRequest,
    Action,
    Challenge,
    Context,
    Decision,
    Method,
    Outcome,
    Resource,
    SessionAuth,
    Subject,
    Transaction,
)
from piigate.policy.compiled import CompiledPolicy
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

Name = Annotated[str, Field(min_length=1, max_length=255)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectIn(_In):
    id: Name
    roles: list[Name] = Field(default_factory=list, max_length=64)
    scopes: list[Name] = Field(default_factory=list, max_length=64)


class SessionIn(_In):
    id: Annotated[str, Field(max_length=255)] | None = None
    acr: Annotated[str, Field(max_length=255)] | None = None
    amr: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=16)
    auth_time: Annotated[int, Field(ge=0, le=32503680000)] | None = None


def _is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address, as ``ipaddress.ip_address`` accepts it. The C parser answers
    the common forms (it runs on every decision); the rest (a scoped IPv6 address) and every
    refusal get the exact ``ipaddress`` rules."""
    if len(value) <= 45 and value.isascii():
        family = socket.AF_INET6 if ":" in value else socket.AF_INET
        try:
            socket.inet_pton(family, value)
        except OSError:
            pass
        else:
            return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class ContextIn(_In):
    ip: str | None = None
    user_agent: Annotated[str, Field(max_length=1024)] | None = None
    device_id: Annotated[str, Field(max_length=255)] | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None and not _is_ip(value):
            raise ValueError("not an IP address")
        return value


class ResourceIn(_In):
    type: Annotated[str, Field(max_length=255)] | None = None
    id: Annotated[str, Field(max_length=255)] | None = None


class TransactionIn(_In):
    amount: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=6)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    payee: Annotated[str, Field(max_length=255)] | None = None


class DecisionRequestIn(_In):
    subject: SubjectIn
    # default_factory, not a default instance: pydantic deep-copies default models per request.
    session: SessionIn = Field(default_factory=SessionIn)
    grants: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=8)
    context: ContextIn = Field(default_factory=ContextIn)
    action: Action
    resource: ResourceIn = Field(default_factory=ResourceIn)
    pii: list[Name] = Field(default_factory=list, max_length=64)
    transaction: TransactionIn | None = None
    # Extension: fields that identify this one request for bound (max_age: 0) step-ups, e.g.
    # {"method": "DELETE", "path": "/customers/42"}. Hash values that hold PII before sending.
    binding: dict[Name, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=32
    )

    def to_domain(self, policy: CompiledPolicy) -> AccessRequest:
        known = policy.policy.pii
        for index, name in enumerate(self.pii):
            if name not in known:
                # Name the field, never the value: a client may put PII where a class belongs.
                raise BadRequest("pii: unknown PII class", field=f"pii.{index}")
        if self.action is Action.TRANSACT and self.transaction is None:
            raise BadRequest("a transact request needs a transaction", field="transaction")
        acr = self.session.acr
        return AccessRequest(
            subject=Subject(
                id=self.subject.id,
                roles=frozenset(self.subject.roles),
                scopes=frozenset(self.subject.scopes),
            ),
            action=self.action,
            pii=frozenset(self.pii),
            resource=Resource(self.resource.type, self.resource.id),
            session=SessionAuth(
                id=self.session.id,
                acr=acr,
                level=policy.level_for_acr(acr),
                amr=tuple(self.session.amr),
                auth_time=(
                    datetime.fromtimestamp(self.session.auth_time, UTC)
                    if self.session.auth_time is not None
                    else None
                ),
            ),
            context=Context(self.context.ip, self.context.user_agent, self.context.device_id),
            transaction=(
                Transaction(
                    self.transaction.amount, self.transaction.currency, self.transaction.payee
                )
                if self.transaction
                else None
            ),
            grants=tuple(self.grants),
            binding_fields=dict(self.binding),
        )


class LoginIn(_In):
    username: Name
    password: Annotated[str, Field(min_length=1, max_length=1024)]


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def challenge_json(challenge: Challenge, *, include_state: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": challenge.id,
        "expires_at": _epoch(challenge.expires_at),
        "url": f"/stepup/{challenge.id}",
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
    if www_authenticate:
        body["www_authenticate"] = www_authenticate
    return body


# -- factors and verification (CONTRACT §4.3, §4.4) ------------------------------------------------
# Codes are bounded but not validated here: a malformed code is a failed verification (counted,
# vague 401), not a 400 that would tell a guesser which inputs are even considered.
Code = Annotated[str, Field(max_length=128)]


class TotpEnrollIn(_In):
    label: Annotated[str, Field(max_length=64)] = ""


class CodeIn(_In):
    code: Code


class SmsEnrollIn(_In):
    # Checked by piigate.factors.sms.parse_phone, whose errors never repeat the number (Pydantic's
    # would not either, but a 422 naming what is wrong is more use than a generic 400).
    phone: Annotated[str, Field(min_length=1, max_length=64)]
    region: Annotated[str, Field(min_length=2, max_length=2)] | None = None
    label: Annotated[str, Field(max_length=64)] = ""


class SmsSendIn(_In):
    factor_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class WebAuthnRegisterIn(_In):
    # The PublicKeyCredential JSON from navigator.credentials.create(); verified by
    # piigate.factors.webauthn.protocol (a malformed one is a refused registration, not a 422).
    credential: dict[str, Any]
    label: Annotated[str, Field(max_length=64)] = ""


class VerifyIn(_In):
    method: Annotated[str, Field(min_length=1, max_length=32)]
    code: Code | None = None
    # WebAuthn's PublicKeyCredential JSON (CONTRACT §4.3); accepted in shape, verified elsewhere.
    credential: dict[str, Any] | None = None

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
