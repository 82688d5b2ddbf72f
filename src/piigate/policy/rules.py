"""The ``rules`` section of a policy file (CONTRACT §2): each rule's ``when``, and its
``require`` or ``deny``.

A rule may only name what the file defines (levels, PII classes, configured factors, known risk
signals), and a CEL ``expr`` must compile and read only ``request``. Problems are recorded with
``FILE:LINE:COL``; a rule that cannot be read is left out (the loader then rejects the file).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

import cel
import yaml

from piigate.model import Action, Method
from piigate.policy.durations import parse_duration
from piigate.policy.model import (
    ANY_PII,
    FactorSettings,
    GrantsFrom,
    LevelDef,
    Match,
    Otherwise,
    PiiClassDef,
    Require,
    Rule,
)
from piigate.policy.sections import DEFAULT_SIGNALS, level_ref
from piigate.policy.yamlnodes import NodeReader

__all__ = ["RuleReader"]

RULE_KEYS: Final = frozenset({"name", "when", "require", "deny", "otherwise", "description"})
WHEN_KEYS: Final = frozenset(
    {
        "pii",
        "action",
        "resource",
        "roles",
        "scopes",
        "amount_over",
        "rows_over",
        "risk_at_least",
        "signals",
        "expr",
    }
)
REQUIRE_KEYS: Final = frozenset({"level", "max_age", "methods", "scope", "grants_from"})
ACTIONS: Final = frozenset(a.value for a in Action) | {"*"}
# The ``when`` conditions that are sets of names, read alike.
NAME_SETS: Final = ("resource", "roles", "scopes", "signals")


class RuleReader:
    """Reads rules against the levels, PII classes and factors the file defines."""

    def __init__(
        self,
        read: NodeReader,
        *,
        levels: dict[str, LevelDef],
        pii: dict[str, PiiClassDef],
        factors: dict[Method, FactorSettings],
    ) -> None:
        self.read = read
        self.errors = read.errors
        self.levels = levels
        self.pii = pii
        self.factors = factors

    def rules(self, node: yaml.Node) -> tuple[Rule, ...]:
        """The rules in file order (their index); a rule name is used once."""
        items = self.read.sequence(node, "rules")
        rules: list[Rule] = []
        names: set[str] = set()
        for index, item in enumerate(items or []):
            rule = self._rule(item, index)
            if rule is None:
                continue
            if rule.name in names:
                self.errors.at(item, f"duplicate rule name {rule.name!r}")
                continue
            names.add(rule.name)
            rules.append(rule)
        return tuple(rules)

    def _rule(self, node: yaml.Node, index: int) -> Rule | None:
        spec = self.read.mapping(node, "a rule", RULE_KEYS)
        if spec is None:
            return None
        name: str | None = None
        if "name" not in spec:
            self.errors.at(node, "a rule needs a 'name'")
        else:
            name = self.read.string(spec["name"][1], "rule name")
        label = f"rule {name!r}" if name else "this rule"
        when = self._when(spec["when"][1], label) if "when" in spec else Match()
        if "when" not in spec:
            self.errors.at(node, f"{label} needs a 'when'")
        has_require, has_deny = "require" in spec, "deny" in spec
        if has_require == has_deny:
            self.errors.at(node, f"{label} needs exactly one of 'require' or 'deny'")
        require = self._require(spec["require"][1], label) if has_require else None
        deny = self.read.string(spec["deny"][1], "deny message") if has_deny else None
        otherwise = self._otherwise(spec, has_deny=has_deny)
        if name is None or when is None or (has_require and require is None):
            return None
        if has_deny and deny is None:
            return None
        return Rule(
            name=name,
            index=index,
            when=when,
            require=require,
            deny=deny,
            otherwise=otherwise,
            position=self.errors.position(node),
        )

    def _otherwise(
        self, spec: dict[str, tuple[yaml.Node, yaml.Node]], *, has_deny: bool
    ) -> Otherwise:
        if "otherwise" not in spec:
            return Otherwise.DENY
        otherwise = Otherwise.DENY
        text = self.read.string(spec["otherwise"][1], "otherwise")
        if text is not None:
            try:
                otherwise = Otherwise(text)
            except ValueError:
                self.errors.at(spec["otherwise"][1], "otherwise must be 'mask' or 'deny'")
        if has_deny:
            self.errors.at(spec["otherwise"][0], "'otherwise' has no meaning on a deny rule")
        return otherwise

    # -- when -----------------------------------------------------------------------------
    # Each condition reader returns None when the condition cannot be used; every condition is
    # read (and its problems reported) even after another one failed.
    def _when(self, node: yaml.Node, label: str) -> Match | None:
        spec = self.read.mapping(node, f"'when' of {label}", WHEN_KEYS)
        if spec is None:
            return None
        ok = True
        pii: frozenset[str] | str | None = None
        if "pii" in spec:
            pii = self._pii_classes(spec["pii"][1])
            ok = pii is not None
        actions = None
        if "action" in spec:
            acts = self._actions(spec["action"][1])
            ok = ok and acts is not None
            actions = None if acts is None or "*" in acts else acts
        sets: dict[str, frozenset[str]] = {}
        for key in NAME_SETS:
            if key in spec:
                values = self._names(spec[key][1], key)
                if values is None:
                    ok = False
                    continue
                sets[key] = values
        amount = None
        if "amount_over" in spec:
            amount = self._amount(spec["amount_over"][1])
            ok = ok and amount is not None
        rows_over = None
        if "rows_over" in spec:
            rows_over = self.read.integer(spec["rows_over"][1], "rows_over", high=2**62)
            ok = ok and rows_over is not None
        risk_at_least = None
        if "risk_at_least" in spec:
            risk_at_least = self.read.integer(spec["risk_at_least"][1], "risk_at_least", high=100)
            ok = ok and risk_at_least is not None
        expr = None
        if "expr" in spec:
            expr = self._expr(spec["expr"][1])
            ok = ok and expr is not None
        if not ok:
            return None
        return Match(
            pii=pii,
            actions=actions,
            resources=sets.get("resource"),
            roles=sets.get("roles"),
            scopes=sets.get("scopes"),
            amount_over=amount,
            rows_over=rows_over,
            risk_at_least=risk_at_least,
            signals=sets.get("signals"),
            expr=expr,
        )

    def _pii_classes(self, node: yaml.Node) -> frozenset[str] | str | None:
        """``any``, or classes the ``pii`` section defines."""
        if isinstance(node, yaml.ScalarNode) and node.value == ANY_PII:
            return ANY_PII
        ok = True
        classes = set()
        for cls, cls_node in self.read.string_list(node, "pii", nonempty=True) or []:
            if cls not in self.pii:
                known = ", ".join(self.pii) or "none defined"
                self.errors.at(cls_node, f"unknown PII class {cls!r} (pii classes: {known})")
                ok = False
            classes.add(cls)
        return frozenset(classes) if ok else None

    def _actions(self, node: yaml.Node) -> frozenset[str] | None:
        """Action names of CONTRACT §2, or ``*`` for every action."""
        ok = True
        acts = set()
        for act, act_node in self.read.string_list(node, "action", nonempty=True) or []:
            if act not in ACTIONS:
                self.errors.at(
                    act_node,
                    f"unknown action {act!r} (expected one of: {', '.join(sorted(ACTIONS))})",
                )
                ok = False
            acts.add(act)
        return frozenset(acts) if ok else None

    def _names(self, node: yaml.Node, key: str) -> frozenset[str] | None:
        """A non-empty set of names; ``signals`` must name known risk signals."""
        values = self.read.string_list(node, key, nonempty=True)
        if values is None:
            return None
        ok = True
        if key == "signals":
            for sig, sig_node in values:
                if sig not in DEFAULT_SIGNALS:
                    self.errors.at(sig_node, f"unknown risk signal {sig!r}")
                    ok = False
        return frozenset(v for v, _ in values) if ok else None

    def _amount(self, node: yaml.Node) -> Decimal | None:
        """An exact decimal threshold (the source text, never a float)."""
        text = self.read.number(node, "amount_over")
        try:
            return Decimal(text) if text is not None else None
        except InvalidOperation:
            self.errors.at(node, "amount_over must be a number")
            return None

    def _expr(self, node: yaml.Node) -> str | None:
        source = self.read.string(node, "expr")
        if source is None:
            return None
        try:
            program = cel.compile(source)
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            detail = first.split("ERROR: <input>:", 1)[-1]
            self.errors.at(node, f"invalid CEL expression: {detail}")
            return None
        unknown = [v for v in program.variables() if v != "request" and "." not in v]
        # Comprehension variables also appear in variables(); only flag names that look global.
        roots = {v.split(".")[0] for v in program.variables()}
        if "request" not in roots and unknown:
            self.errors.at(
                node, f"CEL expression may only use 'request' (found: {', '.join(unknown)})"
            )
            return None
        return source

    # -- require --------------------------------------------------------------------------
    def _require(self, node: yaml.Node, label: str) -> Require | None:
        spec = self.read.mapping(node, f"'require' of {label}", REQUIRE_KEYS)
        if spec is None:
            return None
        if "level" not in spec:
            self.errors.at(node, f"'require' of {label} needs a 'level'")
            return None
        level = level_ref(self.read, spec["level"][1], f"'require' of {label}", self.levels)
        max_age = None
        if "max_age" in spec:
            max_age = self.read.convert(spec["max_age"][1], "max_age", parse_duration)
            if max_age is None:
                return None
        methods = self._methods(spec["methods"][1]) if "methods" in spec else None
        scope: tuple[str, ...] = ()
        if "scope" in spec:
            scope = tuple(v for v, _ in self.read.string_list(spec["scope"][1], "scope") or [])
        grants_from: GrantsFrom | None = GrantsFrom.THIS_APP
        if "grants_from" in spec:
            grants_from = self._grants_from(spec["grants_from"][1], max_age)
        if level is None or grants_from is None:
            return None
        return Require(
            level=level, max_age=max_age, methods=methods, scope=scope, grants_from=grants_from
        )

    def _grants_from(self, node: yaml.Node, max_age: int | None) -> GrantsFrom | None:
        """Whose grants meet the rule. A grant bound to one request (``max_age: 0``) is bound
        to the app that asked too, so it is never shared: saying otherwise is an error."""
        text = self.read.string(node, "grants_from")
        if text is None:
            return None
        try:
            grants_from = GrantsFrom(text)
        except ValueError:
            choices = " or ".join(repr(g.value) for g in GrantsFrom)
            self.errors.at(node, f"grants_from must be {choices}")
            return None
        if grants_from is GrantsFrom.ANY_APP and max_age == 0:
            self.errors.at(
                node,
                "grants_from: any_app cannot apply with max_age: 0 "
                "(a grant bound to one request is bound to the app that asked for it)",
            )
            return None
        return grants_from

    def _methods(self, node: yaml.Node) -> tuple[str, ...]:
        """The factor kinds a rule allows; each must be configured under ``factors``."""
        names = []
        for method, method_node in self.read.string_list(node, "methods") or []:
            try:
                kind = Method(method)
            except ValueError:
                self.errors.at(method_node, f"unknown factor {method!r} in methods")
                continue
            if kind not in self.factors:
                self.errors.at(method_node, f"factor {method!r} is not configured under 'factors'")
                continue
            names.append(method)
        return tuple(names)
