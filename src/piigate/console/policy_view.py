"""The policy in force as the policy page shows it, read from the compiled policy's objects
(``policy/model.py``), not from its file: levels, PII classes, factors, rules with their
``when``/``require``/``deny``, risk weights and step-up settings, its digest and its source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from piigate.model import Method
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.durations import format_duration
from piigate.policy.model import ANY_PII, FactorSettings, GrantsFrom, Match, Require, Rule
from piigate.policy.sections import DURATION_PARAMS

__all__ = [
    "FactorRow",
    "LevelRow",
    "PolicyView",
    "RuleRow",
    "policy_view",
    "require_text",
    "when_text",
]


@dataclass(frozen=True, slots=True)
class LevelRow:
    name: str
    rank: int
    acr: str
    aliases: tuple[str, ...]
    phishing_resistant: bool
    proven_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FactorRow:
    kind: str
    level: str
    settings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RuleRow:
    index: int
    name: str
    when: tuple[str, ...]
    effect: str  # "require", "deny"
    then: tuple[str, ...]
    position: str | None


@dataclass(frozen=True, slots=True)
class PolicyView:
    source: str
    digest: str
    profile: str | None
    levels: tuple[LevelRow, ...]
    pii: tuple[tuple[str, str], ...]  # (class, sensitivity)
    factors: tuple[FactorRow, ...]
    rules: tuple[RuleRow, ...]
    signals: tuple[tuple[str, int, str], ...]  # (name, weight, parameters)
    stepup: tuple[tuple[str, str], ...]


def policy_view(compiled: CompiledPolicy, *, path: str | None) -> PolicyView:
    """What the page shows of ``compiled``, loaded from ``path`` (the policy's own source when
    it was not loaded from a file)."""
    policy = compiled.policy
    settings = policy.stepup
    return PolicyView(
        source=path or policy.source,
        digest=policy.digest,
        profile=policy.profile.value if policy.profile is not None else None,
        levels=tuple(
            LevelRow(
                level.name,
                level.rank,
                level.acr,
                level.aliases,
                level.phishing_resistant,
                compiled.level_methods.get(level.name, ()),
            )
            for level in policy.levels
        ),
        pii=tuple((c.name, c.sensitivity) for c in policy.pii.values()),
        factors=tuple(_factor(f) for f in policy.factors.values()),
        rules=tuple(_rule(rule) for rule in policy.rules),
        signals=tuple(
            (name, s.weight, _params(s.params)) for name, s in policy.risk.signals.items()
        ),
        stepup=(
            ("challenge lifetime", format_duration(settings.challenge_ttl)),
            ("attempts per challenge", str(settings.max_attempts)),
            ("grant lifetime", format_duration(settings.grant_ttl)),
        ),
    )


def _factor(factor: FactorSettings) -> FactorRow:
    shown = [f"at most {factor.max_failures} failures"]
    if factor.kind in (Method.TOTP, Method.SMS):
        shown.append(f"codes live {format_duration(factor.code_lifetime)}")
    if factor.restricted:
        shown.append("restricted")
    if factor.kind is Method.PUSH:
        shown.append("number matching" if factor.number_matching else "no number matching")
    if factor.kind is Method.WEBAUTHN:
        shown.append(f"user verification {factor.user_verification}")
    if factor.approvers:
        shown.append("approvers: " + ", ".join(factor.approvers))
    return FactorRow(factor.kind.value, factor.level, tuple(shown))


def _rule(rule: Rule) -> RuleRow:
    then: tuple[str, ...]
    if rule.deny is not None:
        effect, then = "deny", (f"deny: {rule.deny}",)
    elif rule.require is not None:
        effect, then = "require", require_text(rule.require, otherwise=rule.otherwise.value)
    else:  # pragma: no cover - the loader demands one of them
        effect, then = "none", ()
    position = str(rule.position) if rule.position is not None else None
    return RuleRow(rule.index, rule.name, when_text(rule.when), effect, then, position)


def when_text(match: Match) -> tuple[str, ...]:
    """Each condition of a rule's ``when``, in words; ``every request`` when it has none."""
    found: list[str] = []
    if match.pii is not None:
        found.append(
            "pii: any class" if match.pii == ANY_PII else "pii: " + ", ".join(sorted(match.pii))
        )
    if match.actions is not None:
        found.append("action: " + ", ".join(sorted(match.actions)))
    for label, names in (
        ("resource", match.resources),
        ("roles", match.roles),
        ("scopes", match.scopes),
        ("signals", match.signals),
    ):
        if names is not None:
            found.append(f"{label}: " + ", ".join(sorted(names)))
    if match.amount_over is not None:
        found.append(f"amount over {match.amount_over}")
    if match.rows_over is not None:
        found.append(f"rows over {match.rows_over}")
    if match.risk_at_least is not None:
        found.append(f"risk at least {match.risk_at_least}")
    if match.expr is not None:
        found.append(f"expr: {match.expr}")
    return tuple(found) or ("every request",)


def require_text(require: Require, *, otherwise: str = "deny") -> tuple[str, ...]:
    """A ``require`` in words: level, recency, methods, scopes, whose grants, and ``otherwise``."""
    found = [f"level {require.level}"]
    if require.max_age == 0:
        found.append("bound to the one request (max_age 0)")
    elif require.max_age is not None:
        found.append(f"proven within {format_duration(require.max_age)}")
    if require.methods is not None:
        found.append("methods: " + ", ".join(require.methods))
    if require.scope:
        found.append("scope: " + ", ".join(require.scope))
    if require.grants_from is GrantsFrom.ANY_APP:
        found.append("grants from any app")
    found.append("otherwise mask" if otherwise == "mask" else "otherwise step up")
    return tuple(found)


def _params(params: Mapping[str, int]) -> str:
    return ", ".join(
        f"{key} {format_duration(value) if key in DURATION_PARAMS else value}"
        for key, value in params.items()
    )
