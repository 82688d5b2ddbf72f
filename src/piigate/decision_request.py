"""The decision request (CONTRACT §4.2) as it arrives, and its one reading into the core.

``POST /v1/decisions`` bodies, ``piigate policy explain --request`` files and the requests of
policy test cases (CONTRACT §3) are the same document, so one set of Pydantic models reads every
field of it, and :func:`access_request` turns what they read into the engine's
:class:`~piigate.model.AccessRequest`. A test case replaces the session by stand-ins for a grant
(``level``, ``auth_age``, ``methods``) and adds ``risk``; it has no grants and no binding.
Validation errors name the field and the rule broken, never the value (it may be PII).
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from piigate.errors import BadRequest
from piigate.model import (
    AccessRequest,
    Action,
    Context,
    ProvenLevel,
    Resource,
    RiskAssessment,
    Rows,
    SessionAuth,
    Signal,
    Subject,
    Transaction,
)
from piigate.policy.compiled import CompiledPolicy

__all__ = [
    "CaseRequestIn",
    "ContextIn",
    "DecisionRequestIn",
    "In",
    "Name",
    "RiskIn",
    "access_request",
    "first_error",
    "read_case_request",
]

Name = Annotated[str, Field(min_length=1, max_length=255)]


class In(BaseModel):
    """An input document: unknown keys are errors, and the parsed value cannot change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectIn(In):
    id: Name
    roles: list[Name] = Field(default_factory=list, max_length=64)
    scopes: list[Name] = Field(default_factory=list, max_length=64)


class SessionIn(In):
    id: Annotated[str, Field(max_length=255)] | None = None
    acr: Annotated[str, Field(max_length=255)] | None = None
    amr: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=16)
    auth_time: Annotated[int, Field(ge=0, le=32503680000)] | None = None

    def to_domain(self, policy: CompiledPolicy) -> SessionAuth:
        return SessionAuth(
            id=self.id,
            acr=self.acr,
            level=policy.level_for_acr(self.acr),
            amr=tuple(self.amr),
            auth_time=(
                datetime.fromtimestamp(self.auth_time, UTC) if self.auth_time is not None else None
            ),
        )


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


class ContextIn(In):
    ip: str | None = None
    user_agent: Annotated[str, Field(max_length=1024)] | None = None
    device_id: Annotated[str, Field(max_length=255)] | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None and not _is_ip(value):
            raise ValueError("not an IP address")
        return value

    def to_domain(self) -> Context:
        return Context(self.ip, self.user_agent, self.device_id)


class ResourceIn(In):
    type: Annotated[str, Field(max_length=255)] | None = None
    id: Annotated[str, Field(max_length=255)] | None = None


class RowsIn(In):
    estimate: Annotated[int, Field(ge=0, le=2**62)]
    bounded: bool = True


class TransactionIn(In):
    amount: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=6)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    payee: Annotated[str, Field(max_length=255)] | None = None


# A ``POST /v1/decisions`` body (CONTRACT §4.2). A comment, not a docstring: Pydantic would put a
# docstring into the OpenAPI schema.
class DecisionRequestIn(In):
    subject: SubjectIn
    # default_factory, not a default instance: pydantic deep-copies default models per request.
    session: SessionIn = Field(default_factory=SessionIn)
    grants: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=8)
    context: ContextIn = Field(default_factory=ContextIn)
    action: Action
    resource: ResourceIn = Field(default_factory=ResourceIn)
    pii: list[Name] = Field(default_factory=list, max_length=64)
    transaction: TransactionIn | None = None
    # Extension: how many rows the request reads or changes (a gateway's estimate), for
    # ``rows_over`` rules and the risk engine's counts.
    rows: RowsIn | None = None
    # Extension: fields that identify this one request for bound (max_age: 0) step-ups, e.g.
    # {"method": "DELETE", "path": "/customers/42"}. Hash values that hold PII before sending.
    binding: dict[Name, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=32
    )

    def to_domain(self, policy: CompiledPolicy) -> AccessRequest:
        return access_request(
            self,
            policy,
            session=self.session.to_domain(policy),
            grants=tuple(self.grants),
            binding=dict(self.binding),
        )


class CaseSessionIn(In):
    """A test case's stand-in for a grant: ``level`` proven ``auth_age`` seconds ago."""

    level: Name | None = None
    auth_age: Annotated[int, Field(ge=0)] = 0
    methods: list[Name] = Field(default_factory=list)


class RiskIn(In):
    """A test case's stand-in for the risk engine."""

    score: Annotated[int, Field(ge=0, le=100)] = 0
    signals: list[Name] = Field(default_factory=list)


class CaseRequestIn(In):
    """The request of a policy test case (CONTRACT §3)."""

    subject: SubjectIn
    session: CaseSessionIn = Field(default_factory=CaseSessionIn)
    context: ContextIn = Field(default_factory=ContextIn)
    action: Action
    resource: ResourceIn = Field(default_factory=ResourceIn)
    pii: list[Name] = Field(default_factory=list, max_length=64)
    transaction: TransactionIn | None = None
    rows: RowsIn | None = None
    risk: RiskIn | None = None

    def to_domain(
        self, policy: CompiledPolicy, *, now: datetime
    ) -> tuple[AccessRequest, tuple[ProvenLevel, ...]]:
        """The request, and the proof its session stands in for (none without a level)."""
        level = self.session.level
        if level is not None and level not in policy.ranks:
            raise BadRequest(f"unknown level {level!r} in session", field="session.level")
        risk = self.risk
        request = access_request(
            self,
            policy,
            session=SessionAuth(level=level),
            risk=(
                None
                if risk is None
                else RiskAssessment(risk.score, tuple(Signal(name, 0) for name in risk.signals))
            ),
        )
        if level is None:
            return request, ()
        proof = ProvenLevel(
            level,
            now - timedelta(seconds=self.session.auth_age),
            "session",
            methods=frozenset(self.session.methods),
        )
        return request, (proof,)


def access_request(
    body: DecisionRequestIn | CaseRequestIn,
    policy: CompiledPolicy,
    *,
    session: SessionAuth,
    grants: tuple[str, ...] = (),
    binding: dict[str, str] | None = None,
    risk: RiskAssessment | None = None,
) -> AccessRequest:
    """The engine's request from a validated body; ``BadRequest`` naming the field (never the
    value) when the policy does not know a PII class, or a transaction is missing."""
    known = policy.policy.pii
    for index, name in enumerate(body.pii):
        if name not in known:
            # Name the field, never the value: a client may put PII where a class belongs.
            raise BadRequest("pii: unknown PII class", field=f"pii.{index}")
    if body.action is Action.TRANSACT and body.transaction is None:
        raise BadRequest("a transact request needs a transaction", field="transaction")
    subject, txn = body.subject, body.transaction
    return AccessRequest(
        subject=Subject(
            id=subject.id, roles=frozenset(subject.roles), scopes=frozenset(subject.scopes)
        ),
        action=body.action,
        pii=frozenset(body.pii),
        resource=Resource(body.resource.type, body.resource.id),
        session=session,
        context=body.context.to_domain(),
        transaction=None if txn is None else Transaction(txn.amount, txn.currency, txn.payee),
        rows=None if body.rows is None else Rows(body.rows.estimate, body.rows.bounded),
        grants=grants,
        binding_fields=binding if binding is not None else {},
        risk=risk,
    )


def first_error(exc: ValidationError) -> str:
    """``field: rule broken`` for the first error of ``exc``; never the value."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "request"
    return f"{where}: {first['msg']}"


def read_case_request(
    data: object, policy: CompiledPolicy, *, now: datetime
) -> tuple[AccessRequest, tuple[ProvenLevel, ...]]:
    """A test case's request and proof (:meth:`CaseRequestIn.to_domain`); ValueError naming the
    field, for the case's positioned error."""
    try:
        return CaseRequestIn.model_validate(data).to_domain(policy, now=now)
    except ValidationError as exc:
        raise ValueError(first_error(exc)) from None
    except BadRequest as exc:
        raise ValueError(exc.detail) from None
