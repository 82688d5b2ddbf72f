"""Loading a policy file (CONTRACT §2) into a :class:`Policy`, or a list of positioned errors.

A policy is all or nothing: ``load_policy`` raises :class:`PolicyError` with every problem found
(``FILE:LINE:COL: message``), and nothing of a bad file is ever applied.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation
from typing import Final

import cel
import yaml

from piigate.errors import PolicyError
from piigate.model import Action, Method
from piigate.policy.durations import parse_duration
from piigate.policy.lint import lint_profile
from piigate.policy.model import (
    ANY_PII,
    FactorSettings,
    LevelDef,
    Match,
    Otherwise,
    PiiClassDef,
    Policy,
    Profile,
    Require,
    RiskSettings,
    Rule,
    SignalSettings,
    StepUpSettings,
)
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_file, compose_text

__all__ = ["DEFAULT_SIGNALS", "load_policy", "load_policy_text", "parse_policy_node"]

TOP_KEYS: Final = frozenset(
    {"version", "levels", "pii", "factors", "rules", "risk", "profile", "stepup"}
)
# Sections that share the file with the policy but belong to other parts (CONTRACT §7, §8).
FOREIGN_KEYS: Final = frozenset({"gateway", "service"})
LEVEL_KEYS: Final = frozenset({"acr", "aliases", "phishing_resistant"})
PII_KEYS: Final = frozenset({"sensitivity"})
SENSITIVITIES: Final = frozenset({"low", "medium", "high"})
FACTOR_KEYS: Final = frozenset(
    {
        "level",
        "restricted",
        "number_matching",
        "user_verification",
        "max_failures",
        "code_lifetime",
        "approvers",
    }
)
RULE_KEYS: Final = frozenset({"name", "when", "require", "deny", "otherwise", "description"})
WHEN_KEYS: Final = frozenset(
    {
        "pii",
        "action",
        "resource",
        "roles",
        "scopes",
        "amount_over",
        "risk_at_least",
        "signals",
        "expr",
    }
)
REQUIRE_KEYS: Final = frozenset({"level", "max_age", "methods", "scope"})
STEPUP_KEYS: Final = frozenset({"challenge_ttl", "max_attempts", "grant_ttl"})
ACTIONS: Final = frozenset(a.value for a in Action) | {"*"}

# Signal → (default weight, {parameter: default}); parameters named "window" are durations.
DEFAULT_SIGNALS: Final[dict[str, tuple[int, dict[str, int]]]] = {
    "new_device": (30, {}),
    "new_country": (40, {}),
    "new_asn": (15, {}),
    "unfamiliar_client": (15, {}),
    "impossible_travel": (70, {"suspicious_kmh": 250, "impossible_kmh": 900}),
    "velocity": (30, {"window": 60, "limit": 60}),
    "pii_enumeration": (50, {"window": 600, "distinct_records": 50}),
    "bulk_destructive": (60, {"window": 600, "limit": 20}),
    "failed_stepups": (40, {"window": 900, "limit": 3}),
    "denied_push": (50, {}),
}
# CONTRACT §5.5: the profile's limits are also the defaults of the factor settings.
PROFILE_DEFAULTS: Final = {
    None: {"max_failures": 100, "code_lifetime": 300},
    Profile.NIST_800_63B_4: {"max_failures": 100, "code_lifetime": 300},
    Profile.PSD2: {"max_failures": 5, "code_lifetime": 300},
}


def load_policy(path: str) -> Policy:
    errors = YamlErrors(path)
    return _parsed(compose_file(path, errors), errors, path)


def load_policy_text(text: str, *, source: str = "<policy>") -> Policy:
    errors = YamlErrors(source)
    return _parsed(compose_text(text, errors), errors, source)


def _parsed(node: yaml.Node | None, errors: YamlErrors, source: str) -> Policy:
    policy = parse_policy_node(node, errors, source=source) if node is not None else None
    if errors or policy is None:
        raise PolicyError(errors.messages)
    return policy


def parse_policy_node(node: yaml.Node, errors: YamlErrors, *, source: str) -> Policy | None:
    return _PolicyParser(errors, source).parse(node)


class _PolicyParser:
    def __init__(self, errors: YamlErrors, source: str) -> None:
        self.errors = errors
        self.read = NodeReader(errors)
        self.source = source
        self.levels: dict[str, LevelDef] = {}
        self.pii: dict[str, PiiClassDef] = {}
        self.factors: dict[Method, FactorSettings] = {}
        self.profile: Profile | None = None

    def parse(self, root: yaml.Node) -> Policy | None:
        top = self.read.mapping(root, "the policy", TOP_KEYS | FOREIGN_KEYS)
        if top is None:
            return None
        if "version" not in top:
            self.errors.at(root, "missing required key 'version' (use version: 1)")
        else:
            version = self.read.integer(top["version"][1], "version")
            if version is not None and version != 1:
                self.errors.at(top["version"][1], f"unsupported policy version {version}")
        for required in ("levels", "rules"):
            if required not in top:
                self.errors.at(root, f"missing required key {required!r}")
        if "profile" in top:
            self.profile = self._profile(top["profile"][1])
        if "levels" in top:
            self._levels(top["levels"][1])
        if "pii" in top:
            self._pii(top["pii"][1])
        if "factors" in top:
            self._factors(top["factors"][1])
        rules = self._rules(top["rules"][1]) if "rules" in top else ()
        risk = self._risk(top["risk"][1] if "risk" in top else None)
        stepup = self._stepup(top["stepup"][1]) if "stepup" in top else StepUpSettings()
        if self.errors:
            return None
        policy = Policy(
            source=self.source,
            levels=tuple(self.levels.values()),
            pii=dict(self.pii),
            factors=dict(self.factors),
            rules=rules,
            risk=risk,
            stepup=stepup,
            profile=self.profile,
            digest=_digest(root),
        )
        lint_profile(policy, top, self.errors)
        return None if self.errors else policy

    # -- sections -------------------------------------------------------------------------
    def _profile(self, node: yaml.Node) -> Profile | None:
        name = self.read.string(node, "profile")
        if name is None:
            return None
        try:
            return Profile(name)
        except ValueError:
            choices = ", ".join(p.value for p in Profile)
            self.errors.at(node, f"unknown profile {name!r} (expected one of: {choices})")
            return None

    def _levels(self, node: yaml.Node) -> None:
        seen_acr: dict[str, str] = {}
        for rank, (name, _key_node, value) in enumerate(self.read.items(node, "levels")):
            spec = self.read.mapping(value, f"level {name!r}", LEVEL_KEYS)
            if spec is None:
                continue
            if "acr" not in spec:
                self.errors.at(value, f"level {name!r} needs an 'acr'")
                continue
            acr = self.read.string(spec["acr"][1], f"acr of level {name!r}")
            aliases: list[str] = []
            if "aliases" in spec:
                for alias, alias_node in self.read.string_list(spec["aliases"][1], "aliases") or []:
                    if alias in seen_acr:
                        self.errors.at(
                            alias_node, f"alias {alias!r} already names {seen_acr[alias]!r}"
                        )
                    seen_acr[alias] = name
                    aliases.append(alias)
            pr = False
            if "phishing_resistant" in spec:
                pr = bool(self.read.boolean(spec["phishing_resistant"][1], "phishing_resistant"))
            if acr is None:
                continue
            if acr in seen_acr:
                self.errors.at(spec["acr"][1], f"acr {acr!r} already names level {seen_acr[acr]!r}")
            seen_acr[acr] = name
            self.levels[name] = LevelDef(name, rank, acr, tuple(aliases), pr)
        if not self.levels and not self.errors:
            self.errors.at(node, "define at least one level")

    def _pii(self, node: yaml.Node) -> None:
        for name, _key, value in self.read.items(node, "pii"):
            sensitivity = "high"
            if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
                self.pii[name] = PiiClassDef(name)
                continue
            spec = self.read.mapping(value, f"pii class {name!r}", PII_KEYS)
            if spec is None:
                continue
            if "sensitivity" in spec:
                text = self.read.string(spec["sensitivity"][1], "sensitivity")
                if text is not None and text not in SENSITIVITIES:
                    self.errors.at(
                        spec["sensitivity"][1], "sensitivity must be low, medium or high"
                    )
                sensitivity = text or sensitivity
            self.pii[name] = PiiClassDef(name, sensitivity)

    def _level_ref(self, node: yaml.Node, what: str) -> str | None:
        name = self.read.string(node, what)
        if name is not None and name not in self.levels:
            known = ", ".join(self.levels) or "none defined"
            self.errors.at(node, f"unknown level {name!r} in {what} (levels: {known})")
            return None
        return name

    def _factors(self, node: yaml.Node) -> None:
        defaults = PROFILE_DEFAULTS[self.profile]
        for name, key_node, value in self.read.items(node, "factors"):
            try:
                kind = Method(name)
            except ValueError:
                choices = ", ".join(k.value for k in Method)
                self.errors.at(key_node, f"unknown factor {name!r} (expected one of: {choices})")
                continue
            spec = self.read.mapping(value, f"factor {name!r}", FACTOR_KEYS)
            if spec is None:
                continue
            if "level" not in spec:
                self.errors.at(value, f"factor {name!r} needs a 'level'")
                continue
            level = self._level_ref(spec["level"][1], f"the level of factor {name!r}")
            settings: dict[str, object] = dict(defaults)
            for flag in ("restricted", "number_matching"):
                if flag in spec:
                    settings[flag] = self.read.boolean(spec[flag][1], flag)
            if "user_verification" in spec:
                uv = self.read.string(spec["user_verification"][1], "user_verification")
                if uv not in (None, "required", "preferred", "discouraged"):
                    self.errors.at(
                        spec["user_verification"][1],
                        "user_verification must be required, preferred or discouraged",
                    )
                settings["user_verification"] = uv
            if "max_failures" in spec:
                settings["max_failures"] = self.read.integer(
                    spec["max_failures"][1], "max_failures", low=1
                )
            if "code_lifetime" in spec:
                settings["code_lifetime"] = self.read.convert(
                    spec["code_lifetime"][1], "code_lifetime", parse_duration
                )
            if "approvers" in spec:
                settings["approvers"] = tuple(
                    v for v, _ in self.read.string_list(spec["approvers"][1], "approvers") or []
                )
            if level is None or any(v is None for v in settings.values()):
                continue
            self.factors[kind] = FactorSettings(kind=kind, level=level, **settings)  # type: ignore[arg-type]

    def _rules(self, node: yaml.Node) -> tuple[Rule, ...]:
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
        otherwise = Otherwise.DENY
        if "otherwise" in spec:
            text = self.read.string(spec["otherwise"][1], "otherwise")
            if text is not None:
                try:
                    otherwise = Otherwise(text)
                except ValueError:
                    self.errors.at(spec["otherwise"][1], "otherwise must be 'mask' or 'deny'")
            if has_deny:
                self.errors.at(spec["otherwise"][0], "'otherwise' has no meaning on a deny rule")
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

    def _when(self, node: yaml.Node, label: str) -> Match | None:
        spec = self.read.mapping(node, f"'when' of {label}", WHEN_KEYS)
        if spec is None:
            return None
        ok = True
        pii: frozenset[str] | str | None = None
        if "pii" in spec:
            value = spec["pii"][1]
            if isinstance(value, yaml.ScalarNode) and value.value == ANY_PII:
                pii = ANY_PII
            else:
                classes = set()
                for cls, cls_node in self.read.string_list(value, "pii", nonempty=True) or []:
                    if cls not in self.pii:
                        known = ", ".join(self.pii) or "none defined"
                        self.errors.at(
                            cls_node, f"unknown PII class {cls!r} (pii classes: {known})"
                        )
                        ok = False
                    classes.add(cls)
                pii = frozenset(classes)
        actions = None
        if "action" in spec:
            acts = set()
            for act, act_node in (
                self.read.string_list(spec["action"][1], "action", nonempty=True) or []
            ):
                if act not in ACTIONS:
                    self.errors.at(
                        act_node,
                        f"unknown action {act!r} (expected one of: {', '.join(sorted(ACTIONS))})",
                    )
                    ok = False
                acts.add(act)
            actions = None if "*" in acts else frozenset(acts)
        sets: dict[str, frozenset[str] | None] = {}
        for key in ("resource", "roles", "scopes", "signals"):
            if key in spec:
                values = self.read.string_list(spec[key][1], key, nonempty=True)
                if values is None:
                    ok = False
                    continue
                if key == "signals":
                    for sig, sig_node in values:
                        if sig not in DEFAULT_SIGNALS:
                            self.errors.at(sig_node, f"unknown risk signal {sig!r}")
                            ok = False
                sets[key] = frozenset(v for v, _ in values)
        amount = None
        if "amount_over" in spec:
            text = self.read.number(spec["amount_over"][1], "amount_over")
            try:
                amount = Decimal(text) if text is not None else None
            except InvalidOperation:
                self.errors.at(spec["amount_over"][1], "amount_over must be a number")
            ok = ok and amount is not None
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
            risk_at_least=risk_at_least,
            signals=sets.get("signals"),
            expr=expr,
        )

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

    def _require(self, node: yaml.Node, label: str) -> Require | None:
        spec = self.read.mapping(node, f"'require' of {label}", REQUIRE_KEYS)
        if spec is None:
            return None
        if "level" not in spec:
            self.errors.at(node, f"'require' of {label} needs a 'level'")
            return None
        level = self._level_ref(spec["level"][1], f"'require' of {label}")
        max_age = None
        if "max_age" in spec:
            max_age = self.read.convert(spec["max_age"][1], "max_age", parse_duration)
            if max_age is None:
                return None
        methods = None
        if "methods" in spec:
            names = []
            for method, method_node in self.read.string_list(spec["methods"][1], "methods") or []:
                try:
                    kind = Method(method)
                except ValueError:
                    self.errors.at(method_node, f"unknown factor {method!r} in methods")
                    continue
                if kind not in self.factors:
                    self.errors.at(
                        method_node, f"factor {method!r} is not configured under 'factors'"
                    )
                    continue
                names.append(method)
            methods = tuple(names)
        scope: tuple[str, ...] = ()
        if "scope" in spec:
            scope = tuple(v for v, _ in self.read.string_list(spec["scope"][1], "scope") or [])
        if level is None:
            return None
        return Require(level=level, max_age=max_age, methods=methods, scope=scope)

    def _risk(self, node: yaml.Node | None) -> RiskSettings:
        signals = {
            name: SignalSettings(weight, dict(params))
            for name, (weight, params) in DEFAULT_SIGNALS.items()
        }
        if node is None:
            return RiskSettings(signals)
        for name, key_node, value in self.read.items(node, "risk"):
            if name not in DEFAULT_SIGNALS:
                known = ", ".join(DEFAULT_SIGNALS)
                self.errors.at(key_node, f"unknown risk signal {name!r} (expected one of: {known})")
                continue
            default_weight, default_params = DEFAULT_SIGNALS[name]
            if isinstance(value, yaml.ScalarNode):
                weight = self.read.integer(value, f"weight of {name}", high=100)
                if weight is not None:
                    signals[name] = SignalSettings(weight, dict(default_params))
                continue
            allowed = frozenset({"weight", *default_params})
            spec = self.read.mapping(value, f"risk signal {name!r}", allowed)
            if spec is None:
                continue
            weight = default_weight
            if "weight" in spec:
                weight = self.read.integer(spec["weight"][1], f"weight of {name}", high=100) or 0
            params = dict(default_params)
            for param in default_params:
                if param not in spec:
                    continue
                pnode = spec[param][1]
                parsed = (
                    self.read.convert(pnode, param, parse_duration)
                    if param == "window"
                    else self.read.integer(pnode, param, low=1)
                )
                if parsed is not None:
                    params[param] = parsed
            signals[name] = SignalSettings(weight, params)
        return RiskSettings(signals)

    def _stepup(self, node: yaml.Node) -> StepUpSettings:
        spec = self.read.mapping(node, "stepup", STEPUP_KEYS) or {}
        values: dict[str, int] = {}
        for key in ("challenge_ttl", "grant_ttl"):
            if key in spec:
                parsed = self.read.convert(spec[key][1], key, parse_duration)
                if parsed is not None:
                    values[key] = parsed
        if "max_attempts" in spec:
            attempts = self.read.integer(spec["max_attempts"][1], "max_attempts", low=1)
            if attempts is not None:
                values["max_attempts"] = attempts
        return StepUpSettings(**values)


def _digest(root: yaml.Node) -> str:
    # A stable id for "which policy decided this": the serialized node tree, not file bytes, so
    # comments and formatting do not change it.
    text = yaml.serialize(root)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
