"""Profile lints (CONTRACT §5.5): the limits a regulatory profile puts on factor settings.

``nist-800-63b-4`` follows NIST SP 800-63B rev. 4: at most 100 consecutive failed attempts
(§3.2.2), SMS only as a *restricted* authenticator (§3.1.3.3), no e-mail one-time codes, and
number matching for push approval to defeat MFA fatigue (§3.1.7 / §3.2.9). ``psd2`` follows the
PSD2 RTS (Regulation 2018/389): at most 5 failed attempts (Art. 4(3)(b)), a code lifetime of at
most 5 minutes (Art. 4(3)(d)) and dynamic linking of transactions (Art. 5), which here means a
step-up bound to the one request (``max_age: 0``).
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from piigate.model import Method
from piigate.policy.model import Policy, Profile
from piigate.policy.yamlnodes import YamlErrors

__all__ = ["lint_profile"]

_LIMITS = {
    Profile.NIST_800_63B_4: {"max_failures": 100},
    Profile.PSD2: {"max_failures": 5, "code_lifetime": 300},
}


# Authenticators whose proof is bound to the origin it was made for: WebAuthn. A code, a push
# or another person's approval can be relayed or talked into by a fake site.
_PHISHING_RESISTANT = frozenset({Method.WEBAUTHN})


def lint_profile(
    policy: Policy, top: Mapping[str, tuple[yaml.Node, yaml.Node]], errors: YamlErrors
) -> None:
    factors = top["factors"][1] if "factors" in top else None
    _lint_phishing_resistance(policy, factors, errors)
    if policy.profile is None:
        return
    _lint_limits(policy, policy.profile, factors, errors)
    if policy.profile is Profile.NIST_800_63B_4:
        _lint_nist(policy, policy.profile, factors, errors)
    if policy.profile is Profile.PSD2:
        _lint_psd2(policy, policy.profile, top["rules"][1] if "rules" in top else None, errors)


def _lint_phishing_resistance(
    policy: Policy, factors: yaml.Node | None, errors: YamlErrors
) -> None:
    # Whatever the profile: a level declared phishing resistant (NIST AAL3) is only proven by a
    # phishing-resistant authenticator. A code or a push can be relayed by a fake site.
    resistant = {level.name for level in policy.levels if level.phishing_resistant}
    for kind, settings in policy.factors.items():
        if settings.level in resistant and kind not in _PHISHING_RESISTANT:
            errors.at(
                _where(factors, kind, "level"),
                f"factor {kind} cannot prove {settings.level}: that level is phishing resistant "
                f"and {kind} is not (use webauthn)",
            )


def _lint_limits(
    policy: Policy, profile: Profile, factors: yaml.Node | None, errors: YamlErrors
) -> None:
    limits = _LIMITS[profile]
    for kind, settings in policy.factors.items():
        if settings.max_failures > limits["max_failures"]:
            errors.at(
                _where(factors, kind, "max_failures"),
                f"profile {profile}: factor {kind} allows {settings.max_failures} failures "
                f"(at most {limits['max_failures']})",
            )
        code_limit = limits.get("code_lifetime")
        if code_limit is not None and settings.code_lifetime > code_limit:
            errors.at(
                _where(factors, kind, "code_lifetime"),
                f"profile {profile}: factor {kind} codes live {settings.code_lifetime}s "
                f"(at most {code_limit}s)",
            )


def _lint_nist(
    policy: Policy, profile: Profile, factors: yaml.Node | None, errors: YamlErrors
) -> None:
    sms = policy.factors.get(Method.SMS)
    if sms is not None and not sms.restricted:
        errors.at(
            _where(factors, Method.SMS), f"profile {profile}: SMS must be declared restricted: true"
        )
    if Method.EMAIL in policy.factors:
        errors.at(_where(factors, Method.EMAIL), f"profile {profile}: e-mail codes are not allowed")
    push = policy.factors.get(Method.PUSH)
    if push is not None and not push.number_matching:
        errors.at(
            _where(factors, Method.PUSH), f"profile {profile}: push needs number_matching: true"
        )


def _lint_psd2(
    policy: Policy, profile: Profile, rules: yaml.Node | None, errors: YamlErrors
) -> None:
    for rule in policy.rules:
        acts = rule.when.actions
        if rule.require is None or (acts is not None and "transact" not in acts):
            continue
        if acts is None and rule.when.amount_over is None:
            continue  # a rule for every action is not a transaction rule
        if rule.require.max_age != 0:
            node = rules.value[rule.index] if isinstance(rules, yaml.SequenceNode) else None
            errors.at(
                node,
                f"profile {profile}: transaction rule {rule.name!r} needs dynamic linking "
                "(require.max_age: 0)",
            )


def _where(factors: yaml.Node | None, kind: Method, key: str | None = None) -> yaml.Node | None:
    """The node an error about factor ``kind`` points at: its ``key`` if set, else the factor."""
    node = _child(factors, kind.value)
    return _child(node, key) if key and _child(node, key) is not None else node


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if getattr(key_node, "value", None) == key:
            found: yaml.Node = value_node
            return found
    return None
