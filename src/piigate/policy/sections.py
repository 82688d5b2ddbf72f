"""The sections of a policy file (CONTRACT §2) that rules build on: ``profile``, ``levels``,
``pii``, ``factors``, and the tuning sections ``risk`` and ``stepup``.

Each reader records its problems in the :class:`YamlErrors` of its :class:`NodeReader` (with
``FILE:LINE:COL``) and leaves out what it could not read; the loader then rejects the whole file.
"""

from __future__ import annotations

from typing import Final

import yaml

from piigate.model import Method
from piigate.policy.durations import parse_duration
from piigate.policy.model import (
    FactorSettings,
    LevelDef,
    PiiClassDef,
    Profile,
    RiskSettings,
    SignalSettings,
    StepUpSettings,
)
from piigate.policy.yamlnodes import NodeReader

__all__ = [
    "DEFAULT_SIGNALS",
    "DURATION_PARAMS",
    "level_ref",
    "read_factors",
    "read_levels",
    "read_pii",
    "read_profile",
    "read_risk",
    "read_stepup",
]

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
STEPUP_KEYS: Final = frozenset({"challenge_ttl", "max_attempts", "grant_ttl"})
DURATION_PARAMS: Final = frozenset({"window", "min_elapsed", "baseline_window"})

# Signal → (default weight, {parameter: default}); parameters in DURATION_PARAMS are durations
# (seconds, or "30s"/"5m"/"12h"), the others positive integers. docs/RISK.md says how each
# signal scores.
DEFAULT_SIGNALS: Final[dict[str, tuple[int, dict[str, int]]]] = {
    "new_device": (30, {}),
    "new_country": (40, {}),
    "new_asn": (15, {}),
    # The address's /24 (IPv4) or /48 (IPv6) never seen for the subject.
    "new_network": (10, {}),
    # Full weight at a likelihood ratio of full_ratio or more (risk.familiarity).
    "unfamiliar_client": (15, {"full_ratio": 1000}),
    # A hosting, datacenter or VPN network.
    "hosting_network": (25, {}),
    # The subject's first verified activity: nothing to compare with.
    "no_history": (20, {}),
    "impossible_travel": (
        70,
        {"suspicious_kmh": 250, "impossible_kmh": 900, "tolerance_km": 100, "min_elapsed": 300},
    ),
    # Requests per window: per subject (limit) and per client address (ip_limit).
    "velocity": (30, {"window": 60, "limit": 60, "ip_limit": 300}),
    "pii_enumeration": (50, {"window": 600, "distinct_records": 50}),
    # Above limit and above baseline_factor times the subject's own mean over baseline_window.
    "bulk_destructive": (
        60,
        {"window": 600, "limit": 20, "baseline_window": 86_400, "baseline_factor": 3},
    ),
    "failed_stepups": (40, {"window": 900, "limit": 3}),
    "denied_push": (50, {}),
    # The subject reported one of their own events as not theirs (the console's "this wasn't me").
    "reported_activity": (40, {"window": 86_400}),
}
# CONTRACT §5.5: the profile's limits are also the defaults of the factor settings.
PROFILE_DEFAULTS: Final = {
    None: {"max_failures": 100, "code_lifetime": 300},
    Profile.NIST_800_63B_4: {"max_failures": 100, "code_lifetime": 300},
    Profile.PSD2: {"max_failures": 5, "code_lifetime": 300},
}


def read_profile(read: NodeReader, node: yaml.Node) -> Profile | None:
    return read.choice(node, "profile", Profile, "profile")


def read_levels(read: NodeReader, node: yaml.Node) -> dict[str, LevelDef]:
    """The levels in file order (their rank); every acr and alias names one level only."""
    levels: dict[str, LevelDef] = {}
    seen_acr: dict[str, str] = {}
    for rank, (name, _key_node, value) in enumerate(read.items(node, "levels")):
        spec = read.mapping(value, f"level {name!r}", LEVEL_KEYS)
        if spec is None:
            continue
        if "acr" not in spec:
            read.errors.at(value, f"level {name!r} needs an 'acr'")
            continue
        acr = read.string(spec["acr"][1], f"acr of level {name!r}")
        aliases: list[str] = []
        if "aliases" in spec:
            for alias, alias_node in read.string_list(spec["aliases"][1], "aliases") or []:
                if alias in seen_acr:
                    read.errors.at(alias_node, f"alias {alias!r} already names {seen_acr[alias]!r}")
                seen_acr[alias] = name
                aliases.append(alias)
        pr = False
        if "phishing_resistant" in spec:
            pr = bool(read.boolean(spec["phishing_resistant"][1], "phishing_resistant"))
        if acr is None:
            continue
        if acr in seen_acr:
            read.errors.at(spec["acr"][1], f"acr {acr!r} already names level {seen_acr[acr]!r}")
        seen_acr[acr] = name
        levels[name] = LevelDef(name, rank, acr, tuple(aliases), pr)
    if not levels and not read.errors:
        read.errors.at(node, "define at least one level")
    return levels


def read_pii(read: NodeReader, node: yaml.Node) -> dict[str, PiiClassDef]:
    """The PII classes; a class with no settings (``ssn:``) is of high sensitivity."""
    pii: dict[str, PiiClassDef] = {}
    for name, _key, value in read.items(node, "pii"):
        sensitivity = "high"
        if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
            pii[name] = PiiClassDef(name)
            continue
        spec = read.mapping(value, f"pii class {name!r}", PII_KEYS)
        if spec is None:
            continue
        if "sensitivity" in spec:
            text = read.string(spec["sensitivity"][1], "sensitivity")
            if text is not None and text not in SENSITIVITIES:
                read.errors.at(spec["sensitivity"][1], "sensitivity must be low, medium or high")
            sensitivity = text or sensitivity
        pii[name] = PiiClassDef(name, sensitivity)
    return pii


def level_ref(
    read: NodeReader, node: yaml.Node, what: str, levels: dict[str, LevelDef]
) -> str | None:
    """A level named by a factor or a rule; it must be one of ``levels``."""
    name = read.string(node, what)
    if name is not None and name not in levels:
        known = ", ".join(levels) or "none defined"
        read.errors.at(node, f"unknown level {name!r} in {what} (levels: {known})")
        return None
    return name


def read_factors(
    read: NodeReader,
    node: yaml.Node,
    *,
    levels: dict[str, LevelDef],
    profile: Profile | None,
) -> dict[Method, FactorSettings]:
    """The configured factor kinds, each with a level and its settings (profile defaults)."""
    factors: dict[Method, FactorSettings] = {}
    for name, key_node, value in read.items(node, "factors"):
        try:
            kind = Method(name)
        except ValueError:
            choices = ", ".join(k.value for k in Method)
            read.errors.at(key_node, f"unknown factor {name!r} (expected one of: {choices})")
            continue
        spec = read.mapping(value, f"factor {name!r}", FACTOR_KEYS)
        if spec is None:
            continue
        if "level" not in spec:
            read.errors.at(value, f"factor {name!r} needs a 'level'")
            continue
        level = level_ref(read, spec["level"][1], f"the level of factor {name!r}", levels)
        settings = _factor_settings(read, spec, PROFILE_DEFAULTS[profile])
        if level is None or any(v is None for v in settings.values()):
            continue
        factors[kind] = FactorSettings(kind=kind, level=level, **settings)  # type: ignore[arg-type]
    return factors


def _factor_settings(
    read: NodeReader, spec: dict[str, tuple[yaml.Node, yaml.Node]], defaults: dict[str, int]
) -> dict[str, object]:
    """A factor's settings besides its level; a value that could not be read is None."""
    settings: dict[str, object] = dict(defaults)
    for flag in ("restricted", "number_matching"):
        if flag in spec:
            settings[flag] = read.boolean(spec[flag][1], flag)
    if "user_verification" in spec:
        uv = read.string(spec["user_verification"][1], "user_verification")
        if uv not in (None, "required", "preferred", "discouraged"):
            read.errors.at(
                spec["user_verification"][1],
                "user_verification must be required, preferred or discouraged",
            )
        settings["user_verification"] = uv
    if "max_failures" in spec:
        settings["max_failures"] = read.integer(spec["max_failures"][1], "max_failures", low=1)
    if "code_lifetime" in spec:
        settings["code_lifetime"] = read.convert(
            spec["code_lifetime"][1], "code_lifetime", parse_duration
        )
    if "approvers" in spec:
        settings["approvers"] = tuple(
            v for v, _ in read.string_list(spec["approvers"][1], "approvers") or []
        )
    return settings


def read_risk(read: NodeReader, node: yaml.Node | None) -> RiskSettings:
    """Every known signal with its weight and parameters: the defaults, as overridden."""
    signals = {
        name: SignalSettings(weight, dict(params))
        for name, (weight, params) in DEFAULT_SIGNALS.items()
    }
    if node is None:
        return RiskSettings(signals)
    for name, key_node, value in read.items(node, "risk"):
        if name not in DEFAULT_SIGNALS:
            known = ", ".join(DEFAULT_SIGNALS)
            read.errors.at(key_node, f"unknown risk signal {name!r} (expected one of: {known})")
            continue
        default_weight, default_params = DEFAULT_SIGNALS[name]
        if isinstance(value, yaml.ScalarNode):
            weight = read.integer(value, f"weight of {name}", high=100)
            if weight is not None:
                signals[name] = SignalSettings(weight, dict(default_params))
            continue
        allowed = frozenset({"weight", *default_params})
        spec = read.mapping(value, f"risk signal {name!r}", allowed)
        if spec is None:
            continue
        weight = default_weight
        if "weight" in spec:
            weight = read.integer(spec["weight"][1], f"weight of {name}", high=100) or 0
        signals[name] = SignalSettings(weight, _signal_params(read, spec, default_params))
    return RiskSettings(signals)


def _signal_params(
    read: NodeReader, spec: dict[str, tuple[yaml.Node, yaml.Node]], defaults: dict[str, int]
) -> dict[str, int]:
    params = dict(defaults)
    for param in defaults:
        if param not in spec:
            continue
        pnode = spec[param][1]
        parsed = (
            read.convert(pnode, param, parse_duration)
            if param in DURATION_PARAMS
            else read.integer(pnode, param, low=1)
        )
        if parsed is not None:
            params[param] = parsed
    return params


def read_stepup(read: NodeReader, node: yaml.Node) -> StepUpSettings:
    spec = read.mapping(node, "stepup", STEPUP_KEYS) or {}
    values: dict[str, int] = {}
    for key in ("challenge_ttl", "grant_ttl"):
        if key in spec:
            parsed = read.convert(spec[key][1], key, parse_duration)
            if parsed is not None:
                values[key] = parsed
    if "max_attempts" in spec:
        attempts = read.integer(spec["max_attempts"][1], "max_attempts", low=1)
        if attempts is not None:
            values["max_attempts"] = attempts
    return StepUpSettings(**values)
