"""The core vocabulary: frozen dataclasses shared by every layer. Nothing here performs I/O or
reads the clock: edges build these values from their own inputs (HTTP bodies, SQL statements,
CLI files) and the engine answers with a :class:`Decision`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

__all__ = [
    "AccessRequest",
    "Action",
    "Approval",
    "AuditEvent",
    "Challenge",
    "ChallengeState",
    "Context",
    "Decision",
    "Grant",
    "Method",
    "Outcome",
    "ProvenLevel",
    "Requirement",
    "Resource",
    "RiskAssessment",
    "RuleStatus",
    "RuleTrace",
    "SessionAuth",
    "Signal",
    "Subject",
    "Transaction",
]


class Action(StrEnum):
    READ = "read"
    UPDATE = "update"
    CREATE = "create"
    DELETE = "delete"
    EXPORT = "export"
    TRANSACT = "transact"
    LOGIN = "login"


class Method(StrEnum):
    """A way to prove a level: a policy's ``factors`` keys and ``require.methods``, a challenge's
    allowed methods, and the kind of an enrolled factor (``factors.kind``; every method but
    ``approval`` and ``email`` can be enrolled)."""

    TOTP = "totp"
    SMS = "sms"
    PUSH = "push"
    WEBAUTHN = "webauthn"
    RECOVERY = "recovery"
    APPROVAL = "approval"
    EMAIL = "email"


class Outcome(StrEnum):
    ALLOW = "allow"
    STEP_UP = "step_up"
    DENY = "deny"


class ChallengeState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class RuleStatus(StrEnum):
    DENIES = "denies"
    REQUIRES = "requires"
    MET = "met"
    EXPR_ERROR = "expr_error"  # the CEL condition failed; the rule is taken as matching


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """Why one matching rule ended up where it did (for ``explain`` and the audit trail)."""

    rule: str
    status: RuleStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Subject:
    id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    # "user" for people, "service" for API-key callers acting for themselves.
    kind: str = "user"


@dataclass(frozen=True, slots=True)
class SessionAuth:
    """How the caller's current session was authenticated (by an IdP token or a local login).

    ``level`` is the policy level name resolved from ``acr`` (None when unknown or absent);
    ``auth_time`` is when that level was proven.
    """

    id: str | None = None
    acr: str | None = None
    level: str | None = None
    amr: tuple[str, ...] = ()
    auth_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Context:
    ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    type: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Transaction:
    amount: Decimal
    currency: str | None = None
    payee: str | None = None


@dataclass(frozen=True, slots=True)
class Rows:
    """How many rows a statement may read or change: the server's estimate, and whether it is
    bounded at all (a DELETE or UPDATE without WHERE is not)."""

    estimate: int
    bounded: bool = True


@dataclass(frozen=True, slots=True)
class AccessRequest:
    subject: Subject
    action: Action
    pii: frozenset[str] = frozenset()
    resource: Resource = Resource()
    session: SessionAuth = SessionAuth()
    context: Context = Context()
    transaction: Transaction | None = None
    rows: Rows | None = None
    # Raw grant tokens presented with the request (verified by the engine, never trusted as-is).
    grants: tuple[str, ...] = ()
    # Fields that identify this one request for max_age: 0 bindings (method, path, body fields...).
    binding_fields: Mapping[str, str] = field(default_factory=dict)
    # Risk carried by the request (policy tests, trusted callers); the RiskEngine port decides
    # whether to use it.
    risk: RiskAssessment | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    weight: int
    detail: str = ""


_NO_SIGNALS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    score: int = 0
    signals: tuple[Signal, ...] = ()
    # What it saw of the context, for the audit (``risk.engine.evidence``): no raw address or UA.
    evidence: tuple[tuple[str, str], ...] = ()

    @property
    def signal_names(self) -> frozenset[str]:
        if not self.signals:  # the common case, on every decision's hot path
            return _NO_SIGNALS
        return frozenset(s.name for s in self.signals)


@dataclass(frozen=True, slots=True)
class ProvenLevel:
    """A level the caller has already proven: from a grant or an IdP token.

    ``binding`` is set for grants bound to one request (``max_age: 0``); such a proof only
    satisfies a rule when the request's binding digest equals it. ``scope`` (pii class, action)
    pairs restrict a grant to what it was issued for; empty means unrestricted (IdP tokens).
    """

    level: str
    auth_time: datetime
    source: str  # "grant" | "idp" | "session"
    binding: str | None = None
    scope: frozenset[tuple[str, str]] = frozenset()
    grant_id: str | None = None
    # Factors behind the proof (policy factor names); empty = unknown, which cannot satisfy a
    # rule that restricts ``methods``.
    methods: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    # A grant obtained for another requester than the one asking (its audience differs): it
    # meets only rules that accept grants from any app (``require.grants_from: any_app``).
    foreign: bool = False


@dataclass(frozen=True, slots=True)
class Requirement:
    level: str
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None  # seconds; 0 = bound to this request; None = no recency demand
    methods: tuple[str, ...] = ()
    binding: str | None = None
    scope: tuple[str, ...] = ()  # OAuth scopes the token must carry


@dataclass(frozen=True, slots=True)
class Approval:
    """How a challenge was approved: the method, the subject's factor that proved it (None for
    approval by another person, whose id is ``approver``), the level proven, its RFC 8176
    ``amr`` values and when. No secret: it is stored with the challenge (a JSON column) and
    the grant collected later is signed from it."""

    method: Method
    factor_id: str | None
    level: str
    amr: tuple[str, ...]
    auth_time: datetime
    approver: str | None = None

    def to_data(self) -> dict[str, Any]:
        """The JSON object stored in ``challenges.approval`` (``auth_time`` in epoch seconds;
        ``approver`` only when set)."""
        data: dict[str, Any] = {
            "method": self.method.value,
            "factor_id": self.factor_id,
            "level": self.level,
            "amr": list(self.amr),
            "auth_time": int(self.auth_time.timestamp()),
        }
        if self.approver is not None:
            data["approver"] = self.approver
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Approval:
        """The approval stored as :meth:`to_data` wrote it."""
        approver = data.get("approver")
        return cls(
            method=Method(str(data["method"])),
            factor_id=None if data.get("factor_id") is None else str(data["factor_id"]),
            level=str(data["level"]),
            amr=tuple(str(a) for a in data["amr"]),
            auth_time=datetime.fromtimestamp(int(data["auth_time"]), tz=UTC),
            approver=None if approver is None else str(approver),
        )


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    subject_id: str
    requirement: Requirement
    action: Action
    pii: frozenset[str]
    resource: Resource
    created_at: datetime
    expires_at: datetime
    transaction: Transaction | None = None
    session_id: str | None = None
    device_id: str | None = None
    decision_id: str | None = None
    requested_by: str | None = None  # the API key / app that asked for the decision
    # Who the grant it yields is for (``Caller.audience`` of whoever opened it); None: nobody.
    audience: str | None = None
    state: ChallengeState = ChallengeState.PENDING
    attempts: int = 0
    max_attempts: int = 5
    # Set with ``approved``: how it was approved. No secret.
    approval: Approval | None = None
    grant_collected: bool = False  # the grant was handed out (once)


@dataclass(frozen=True, slots=True)
class Decision:
    id: str
    outcome: Outcome
    rules: tuple[str, ...] = ()
    mask: frozenset[str] = frozenset()
    required: Requirement | None = None
    challenge: Challenge | None = None
    risk: RiskAssessment = RiskAssessment()
    reason: str | None = None  # deny message, or why a step-up cannot be satisfied
    missing_scope: tuple[str, ...] = ()  # OAuth scopes a rule needs that the caller lacks
    trace: tuple[RuleTrace, ...] = ()
    # Proofs that the allow relied on (a bound grant is consumed by the engine).
    used: tuple[ProvenLevel, ...] = ()
    # Rules whose CEL condition could not be evaluated (taken as matching: fail closed).
    expr_errors: tuple[str, ...] = ()
    # The strongest level the caller has proven for this request: by the proofs the allow relied
    # on, or by the session (an IdP token's ``acr``). What a gateway tells its upstream.
    level: str | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """The elevation a verified challenge yields (carried as a signed token, see stepup.grants)."""

    id: str
    subject_id: str
    level: str
    amr: tuple[str, ...]
    auth_time: datetime
    expires_at: datetime
    scope: frozenset[tuple[str, str]] = frozenset()  # (pii class, action)
    session_id: str | None = None
    device_id: str | None = None
    binding: str | None = None
    challenge_id: str | None = None
    audience: str | None = None  # the requester it was obtained for (``callers.Caller.audience``)

    @property
    def single_use(self) -> bool:
        return self.binding is not None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One record of the audit chain. ``data`` never holds PII values, codes or tokens."""

    type: str
    at: datetime
    subject_id: str | None = None
    data: Mapping[str, object] = field(default_factory=dict)
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None
