"""Helpers of the tests of what the edges give the risk engine and tell it (imported by name,
like api_support): a risk engine that knows devices only, and the policies with login rules
(the console's sign-in tests use them too)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import datetime

from api_support import Node

from piigate.model import AccessRequest, Context, RiskAssessment, Signal
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk.keys import load_risk_key
from piigate.risk.observation import Feature, keyed

__all__ = [
    "KnownDevices",
    "decided_device",
    "device_key",
    "login_policy",
    "role_login_policy",
]


async def device_key(node: Node, device: str) -> str:
    """How the risk engine's audit evidence names ``device``: its keyed hash."""
    key = await load_risk_key(node.services.store, node.services.keyring, now=node.clock.now())
    return keyed(key.reveal(), Feature.DEVICE, device)


async def decided_device(node: Node) -> str | None:
    """The device of the latest decision, as its audit event names it (a keyed hash)."""
    [*_, event] = await node.services.audit.list_events(types=["decision"], limit=1000)
    risk = event.data["risk"]
    assert isinstance(risk, dict)
    device = risk.get("context", {}).get("device")
    return None if device is None else str(device)


@dataclass
class KnownDevices:
    """A ``RiskEngine`` and ``RiskFeed`` in one: ``new_device`` (30) for a request whose device
    the subject has not verified from; it records what it was asked and told."""

    known: dict[str, set[str]] = field(default_factory=dict)
    assessed: list[AccessRequest] = field(default_factory=list)
    verified_calls: list[tuple[str, Context]] = field(default_factory=list)
    failed_calls: list[str] = field(default_factory=list)

    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment:
        self.assessed.append(request)
        device = request.context.device_id
        if device is not None and device in self.known.get(request.subject.id, set()):
            return RiskAssessment()
        return RiskAssessment(30, (Signal("new_device", 30, "a device not seen verified"),))

    async def verified(self, subject_id: str, context: Context, *, now: datetime) -> None:
        self.verified_calls.append((subject_id, context))
        if context.device_id is not None:
            self.known.setdefault(subject_id, set()).add(context.device_id)

    async def failed_stepup(self, subject_id: str, *, now: datetime) -> None:
        self.failed_calls.append(subject_id)

    def install(self, node: Node) -> KnownDevices:
        """Make this the node's risk engine and feed."""
        node.services.engine.risk = self
        node.services.risk_feed = self
        return self


# What the login policies share: TOTP and recovery codes prove aal2 (and role ``blocked``
# may not log in: :data:`_BLOCKED`).
_LOGIN_POLICY = """\
version: 1
levels:
  aal1: {acr: "urn:piigate:aal1"}
  aal2: {acr: "urn:piigate:aal2"}
pii:
  ssn: {}
factors:
  totp: {level: aal2}
  recovery: {level: aal2}
profile: nist-800-63b-4
"""
_BLOCKED = """\
- name: blocked-accounts
  when: {action: [login], roles: [blocked]}
  deny: "this account may not log in"
"""


def _login_policy(rules: str, *, max_attempts: int | None = None) -> PolicyHolder:
    """:data:`_LOGIN_POLICY` with ``rules`` (a YAML list) and the blocked accounts' rule."""
    listed = textwrap.indent(textwrap.dedent(rules) + _BLOCKED, "  ")
    stepup = "" if max_attempts is None else f"stepup: {{max_attempts: {max_attempts}}}\n"
    return PolicyHolder(
        compile_policy(load_policy_text(f"{_LOGIN_POLICY}rules:\n{listed}{stepup}"))
    )


def login_policy() -> PolicyHolder:
    """TOTP at aal2; a login from a new device steps up to aal2, role ``blocked`` may not log
    in; reading an SSN needs aal2; three attempts per step-up."""
    return _login_policy(
        """\
        - name: login-new-device
          when: {action: [login], signals: [new_device]}
          require: {level: aal2}
        - name: read-ssn
          when: {pii: [ssn], action: [read]}
          require: {level: aal2, max_age: 5m}
        """,
        max_attempts=3,
    )


def role_login_policy() -> PolicyHolder:
    """TOTP at aal2; people with role ``clerk`` log in at aal2 (TOTP steps them up), role
    ``blocked`` may not log in."""
    return _login_policy(
        """\
        - name: clerks-log-in-at-aal2
          when: {action: [login], roles: [clerk]}
          require: {level: aal2}
        """
    )
