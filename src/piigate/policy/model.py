"""The policy as data: what a loaded policy file says, before compilation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from piigate.model import Method

__all__ = [
    "ANY_PII",
    "FactorSettings",
    "GrantsFrom",
    "LevelDef",
    "Match",
    "Otherwise",
    "PiiClassDef",
    "Policy",
    "Position",
    "Profile",
    "Require",
    "RiskSettings",
    "Rule",
    "SignalSettings",
    "StepUpSettings",
]


@dataclass(frozen=True, slots=True)
class Position:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Profile(StrEnum):
    NIST_800_63B_4 = "nist-800-63b-4"
    PSD2 = "psd2"


class Otherwise(StrEnum):
    DENY = "deny"
    MASK = "mask"


ANY_PII = "any"


class GrantsFrom(StrEnum):
    """Whose grants meet a rule (``require.grants_from``): a grant obtained through the app
    that now asks (the default), or through any app or the user's own console."""

    THIS_APP = "this_app"
    ANY_APP = "any_app"


@dataclass(frozen=True, slots=True)
class LevelDef:
    name: str
    rank: int
    acr: str
    aliases: tuple[str, ...] = ()
    phishing_resistant: bool = False


@dataclass(frozen=True, slots=True)
class PiiClassDef:
    name: str
    sensitivity: str = "high"


@dataclass(frozen=True, slots=True)
class FactorSettings:
    kind: Method
    level: str
    restricted: bool = False
    number_matching: bool = False
    user_verification: str = "required"
    max_failures: int = 100
    code_lifetime: int = 300
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """The ``when`` of a rule. ``pii`` is None (no condition), ``ANY_PII`` or a set of classes."""

    pii: frozenset[str] | str | None = None
    actions: frozenset[str] | None = None  # None or containing "*" = every action
    resources: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    scopes: frozenset[str] | None = None
    amount_over: Decimal | None = None
    rows_over: int | None = None
    risk_at_least: int | None = None
    signals: frozenset[str] | None = None
    expr: str | None = None


@dataclass(frozen=True, slots=True)
class Require:
    level: str
    max_age: int | None = None
    methods: tuple[str, ...] | None = None
    scope: tuple[str, ...] = ()
    grants_from: GrantsFrom = GrantsFrom.THIS_APP


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    index: int
    when: Match
    require: Require | None = None
    deny: str | None = None
    otherwise: Otherwise = Otherwise.DENY
    position: Position | None = None


@dataclass(frozen=True, slots=True)
class SignalSettings:
    weight: int
    params: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RiskSettings:
    signals: Mapping[str, SignalSettings]


@dataclass(frozen=True, slots=True)
class StepUpSettings:
    challenge_ttl: int = 300
    max_attempts: int = 5
    grant_ttl: int = 900


@dataclass(frozen=True, slots=True)
class Policy:
    source: str
    levels: tuple[LevelDef, ...]
    pii: Mapping[str, PiiClassDef]
    factors: Mapping[Method, FactorSettings]
    rules: tuple[Rule, ...]
    risk: RiskSettings
    stepup: StepUpSettings = StepUpSettings()
    profile: Profile | None = None
    digest: str = ""
