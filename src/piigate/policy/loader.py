"""Loading a policy file (CONTRACT §2) into a :class:`Policy`, or a list of positioned errors.

A policy is all or nothing: ``load_policy`` raises :class:`PolicyError` with every problem found
(``FILE:LINE:COL: message``), and nothing of a bad file is ever applied.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Final

import yaml

from piigate.errors import PolicyError
from piigate.policy.lint import lint_profile
from piigate.policy.model import Policy, StepUpSettings
from piigate.policy.rules import RuleReader
from piigate.policy.sections import (
    DEFAULT_SIGNALS,
    read_factors,
    read_levels,
    read_pii,
    read_profile,
    read_risk,
    read_stepup,
)
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_text, read_text

__all__ = ["DEFAULT_SIGNALS", "load_policy", "load_policy_text", "parse_policy_node"]

TOP_KEYS: Final = frozenset(
    {"version", "levels", "pii", "factors", "rules", "risk", "profile", "stepup"}
)
# Sections that share the file with the policy but belong to other parts (CONTRACT §7, §8).
FOREIGN_KEYS: Final = frozenset({"gateway", "service"})


def load_policy(path: str) -> Policy:
    errors = YamlErrors(path)
    text = read_text(path, errors)
    if text is None:
        raise PolicyError(errors.messages)
    return load_policy_text(text, source=path)


# A policy is a frozen value of its text: the same text (a reload of an unchanged file, the
# nodes of one process) is parsed once. A bad text raises every time (nothing is cached).
@functools.lru_cache(maxsize=16)
def load_policy_text(text: str, *, source: str = "<policy>") -> Policy:
    errors = YamlErrors(source)
    node = compose_text(text, errors)
    policy = parse_policy_node(node, errors, source=source) if node is not None else None
    if errors or policy is None:
        raise PolicyError(errors.messages)
    return policy


def parse_policy_node(node: yaml.Node, errors: YamlErrors, *, source: str) -> Policy | None:
    """The policy in ``node``, or None with every problem recorded in ``errors``.

    The sections are read in dependency order (the profile sets the factors' defaults; factors
    and rules name levels; rules name PII classes and factors), so that a reference is checked
    against what the file defines.
    """
    read = NodeReader(errors)
    top = read.mapping(node, "the policy", TOP_KEYS | FOREIGN_KEYS)
    if top is None:
        return None
    _check_version(read, node, top)
    for required in ("levels", "rules"):
        if required not in top:
            errors.at(node, f"missing required key {required!r}")
    profile = read_profile(read, top["profile"][1]) if "profile" in top else None
    levels = read_levels(read, top["levels"][1]) if "levels" in top else {}
    pii = read_pii(read, top["pii"][1]) if "pii" in top else {}
    factors = (
        read_factors(read, top["factors"][1], levels=levels, profile=profile)
        if "factors" in top
        else {}
    )
    rule_reader = RuleReader(read, levels=levels, pii=pii, factors=factors)
    rules = rule_reader.rules(top["rules"][1]) if "rules" in top else ()
    risk = read_risk(read, top["risk"][1] if "risk" in top else None)
    stepup = read_stepup(read, top["stepup"][1]) if "stepup" in top else StepUpSettings()
    if errors:
        return None
    policy = Policy(
        source=source,
        levels=tuple(levels.values()),
        pii=dict(pii),
        factors=dict(factors),
        rules=rules,
        risk=risk,
        stepup=stepup,
        profile=profile,
        digest=_digest(node),
    )
    lint_profile(policy, top, errors)
    return None if errors else policy


def _check_version(
    read: NodeReader, root: yaml.Node, top: dict[str, tuple[yaml.Node, yaml.Node]]
) -> None:
    if "version" not in top:
        read.errors.at(root, "missing required key 'version' (use version: 1)")
        return
    version = read.integer(top["version"][1], "version")
    if version is not None and version != 1:
        read.errors.at(top["version"][1], f"unsupported policy version {version}")


def _digest(root: yaml.Node) -> str:
    # A stable id for "which policy decided this": the serialized node tree, not file bytes, so
    # comments and formatting do not change it.
    text = yaml.serialize(root)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
