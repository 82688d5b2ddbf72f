"""A policy compiled for evaluation: rules indexed by action and PII class, CEL compiled once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cel

from piigate.model import Action
from piigate.policy.model import ANY_PII, FactorKind, LevelDef, Policy, Rule

__all__ = ["CompiledPolicy", "compile_policy"]


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The rules of one action: by PII class, for any PII, and those without a PII condition."""

    by_pii: Mapping[str, tuple[Rule, ...]]
    any_pii: tuple[Rule, ...]
    no_pii: tuple[Rule, ...]


@dataclass(frozen=True)
class CompiledPolicy:
    policy: Policy
    ranks: Mapping[str, int]
    levels: Mapping[str, LevelDef]
    acr_to_level: Mapping[str, str]
    buckets: Mapping[str, _Bucket]
    programs: Mapping[str, cel.Program] = field(default_factory=dict)
    # Top-level request fields each CEL program reads (see cel_fields()).
    cel_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    factor_ranks: Mapping[FactorKind, int] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.policy.digest

    def candidates(self, action: str, pii: frozenset[str]) -> Sequence[Rule]:
        """Rules that could match ``action`` on ``pii``, in policy order, without scanning all."""
        bucket = self.buckets.get(action)
        if bucket is None:
            return ()
        found: list[Rule] = list(bucket.no_pii)
        if pii:
            found.extend(bucket.any_pii)
            if len(pii) == 1:
                found.extend(bucket.by_pii.get(next(iter(pii)), ()))
            else:
                seen: set[int] = set()
                for cls in pii:
                    for rule in bucket.by_pii.get(cls, ()):
                        if rule.index not in seen:
                            seen.add(rule.index)
                            found.append(rule)
        found.sort(key=lambda r: r.index)
        return found

    def level_for_acr(self, acr: str | None) -> str | None:
        """The policy level an IdP ``acr`` value (or one of its aliases) stands for."""
        if acr is None:
            return None
        return self.acr_to_level.get(acr)

    def acr_values(self, level: str) -> tuple[str, ...]:
        return (self.levels[level].acr,)


def compile_policy(policy: Policy) -> CompiledPolicy:
    ranks = {level.name: level.rank for level in policy.levels}
    acr_to_level: dict[str, str] = {}
    for level in policy.levels:
        acr_to_level[level.acr] = level.name
        for alias in level.aliases:
            acr_to_level[alias] = level.name
    buckets = {action.value: _bucket(policy.rules, action.value) for action in Action}
    programs = {rule.name: cel.compile(rule.when.expr) for rule in policy.rules if rule.when.expr}
    fields = {rule.name: cel_fields(rule.when.expr) for rule in policy.rules if rule.when.expr}
    factor_ranks = {kind: ranks[f.level] for kind, f in policy.factors.items()}
    return CompiledPolicy(
        policy=policy,
        ranks=ranks,
        levels={level.name: level for level in policy.levels},
        acr_to_level=acr_to_level,
        buckets=buckets,
        programs=programs,
        cel_fields=fields,
        factor_ranks=factor_ranks,
    )


# The top-level fields of the request as CEL sees it (policy.evaluate builds them).
CEL_FIELDS = frozenset(
    {"subject", "action", "pii", "resource", "context", "session", "transaction", "risk"}
)
_FIELD_REF = re.compile(r"\brequest\s*\.\s*([A-Za-z_]\w*)")
_OTHER_REF = re.compile(r"\brequest\b(?!\s*\.)")


def cel_fields(source: str) -> frozenset[str]:
    """The request fields a CEL source reads: ``request.X`` references, or every field when it
    uses ``request`` any other way (indexing, passing it whole), so nothing is ever missing."""
    if _OTHER_REF.search(source):
        return CEL_FIELDS
    named = frozenset(_FIELD_REF.findall(source)) & CEL_FIELDS
    return named if named else CEL_FIELDS


def _bucket(rules: Iterable[Rule], action: str) -> _Bucket:
    by_pii: dict[str, list[Rule]] = {}
    any_pii: list[Rule] = []
    no_pii: list[Rule] = []
    for rule in rules:
        actions = rule.when.actions
        if actions is not None and action not in actions:
            continue
        pii = rule.when.pii
        if pii is None:
            no_pii.append(rule)
        elif pii == ANY_PII:
            any_pii.append(rule)
        else:
            for cls in pii:
                by_pii.setdefault(cls, []).append(rule)
    return _Bucket(
        by_pii={cls: tuple(rs) for cls, rs in by_pii.items()},
        any_pii=tuple(any_pii),
        no_pii=tuple(no_pii),
    )
