"""A policy compiled for evaluation: rules indexed by action and PII class, CEL compiled once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cel

from piigate.model import Action, Method
from piigate.policy.model import ANY_PII, FactorSettings, GrantsFrom, LevelDef, Policy, Rule

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
    # The request fields each CEL program reads, and which of their keys (see cel_selection()).
    cel_fields: Mapping[str, Mapping[str, frozenset[str] | None]] = field(default_factory=dict)
    factor_ranks: Mapping[Method, int] = field(default_factory=dict)
    # Each level → the factor kinds the policy enables that prove at least it, in policy order.
    level_methods: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Some rule accepts grants obtained through another app (``grants_from: any_app``).
    shares_grants: bool = False

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

    def proving(self, method: str, level: str) -> FactorSettings | None:
        """``method``'s settings when the policy enables it and it proves at least ``level``
        (a factor whose level was lowered by a reload cannot answer a stronger challenge)."""
        try:
            settings = self.policy.factors.get(Method(method))
        except ValueError:
            return None
        if settings is None:
            return None
        rank = self.ranks.get(settings.level)
        needed = self.ranks.get(level)
        if rank is None or needed is None or rank < needed:
            return None
        return settings


def compile_policy(policy: Policy) -> CompiledPolicy:
    ranks = {level.name: level.rank for level in policy.levels}
    acr_to_level: dict[str, str] = {}
    for level in policy.levels:
        acr_to_level[level.acr] = level.name
        for alias in level.aliases:
            acr_to_level[alias] = level.name
    buckets = {action.value: _bucket(policy.rules, action.value) for action in Action}
    programs = {rule.name: cel.compile(rule.when.expr) for rule in policy.rules if rule.when.expr}
    fields = {rule.name: cel_selection(rule.when.expr) for rule in policy.rules if rule.when.expr}
    factor_ranks = {kind: ranks[f.level] for kind, f in policy.factors.items()}
    level_methods = {
        level: tuple(kind.value for kind, rank in factor_ranks.items() if rank >= needed)
        for level, needed in ranks.items()
    }
    shares = any(r.require and r.require.grants_from is GrantsFrom.ANY_APP for r in policy.rules)
    return CompiledPolicy(
        policy=policy,
        ranks=ranks,
        levels={level.name: level for level in policy.levels},
        acr_to_level=acr_to_level,
        buckets=buckets,
        programs=programs,
        cel_fields=fields,
        factor_ranks=factor_ranks,
        level_methods=level_methods,
        shares_grants=shares,
    )


# The top-level fields of the request as CEL sees it (policy.evaluate builds them).
CEL_FIELDS = frozenset(
    {"subject", "action", "pii", "resource", "context", "session", "transaction", "risk", "rows"}
)
# ``request.X``, and the ``.y`` selected from it if there is one (with ``(`` when ``.y`` is a call).
_FIELD_REF = re.compile(r"\brequest\s*\.\s*([A-Za-z_]\w*)(?:\s*\.\s*([A-Za-z_]\w*)(\s*\()?)?")
_OTHER_REF = re.compile(r"\brequest\b(?!\s*\.)")


def cel_fields(source: str) -> frozenset[str]:
    """The request fields a CEL source reads: ``request.X`` references, or every field when it
    uses ``request`` any other way (indexing, passing it whole), so nothing is ever missing."""
    return frozenset(cel_selection(source))


def cel_selection(source: str) -> dict[str, frozenset[str] | None]:
    """:func:`cel_fields`, each with the keys the source selects from it (None: all of them).

    Converting a value into CEL costs microseconds per string and map, so a program gets only
    what its source can reach. A field keeps only its keys when every use of it in the source
    is a plain field selection ``request.X.y``; any other use -- the map whole
    (``request.X == {...}``, ``size(request.X)``, ``request.X["y"]``, ``request.X.?y``) or a
    method or macro on it (``request.X.exists(k, ...)`` ranges over its keys) -- keeps it whole.
    A key named in a comment or a string literal is only kept needlessly.
    """
    if _OTHER_REF.search(source):
        return dict.fromkeys(CEL_FIELDS)
    selected: dict[str, set[str] | None] = {}
    for name, key, call in _FIELD_REF.findall(source):
        if name not in CEL_FIELDS:
            continue
        keys = selected.setdefault(name, set())
        if not key or call:
            selected[name] = None
        elif keys is not None:
            keys.add(key)
    if not selected:
        return dict.fromkeys(CEL_FIELDS)
    return {name: None if keys is None else frozenset(keys) for name, keys in selected.items()}


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
