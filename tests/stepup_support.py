"""Helpers of the step-up tests (imported by name: ``tests/`` is on ``sys.path``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

import pytest

from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.fresh import FreshGrants
from piigate.policy.holder import PolicyHolder
from piigate.ports import AuditRecorder
from piigate.store import Store
from piigate.store.ports import SqlChallenges


@dataclass
class RecordingAudit:
    """An ``AuditRecorder`` that keeps every event in memory, for assertions."""

    events: list[tuple[str, str | None, dict[str, object]]] = field(default_factory=list)

    async def record(
        self,
        type: str,
        *,
        subject_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> object:
        self.events.append((type, subject_id, dict(data or {})))
        return None

    def of(self, type: str) -> list[dict[str, object]]:
        return [data for kind, _, data in self.events if kind == type]

    def text(self) -> str:
        return json.dumps(self.events, default=str)

    def reasons(self) -> list[str]:
        return [str(d["reason"]) for d in self.of("verification_failed")]


def factor_enrollment(
    *,
    store: Store,
    keyring: Keyring,
    policy: PolicyHolder,
    audit: AuditRecorder,
    clock: Clock,
    issuer: str,
) -> FactorEnrollment:
    """Factor enrollment wired as a node wires it: the subject's own step-ups (``FreshGrants``)
    verify grants of ``issuer`` and open their challenges in the store."""
    fresh = FreshGrants(
        keyring=keyring,
        issuer=issuer,
        challenges=SqlChallenges(store, keyring),
        policy=policy,
        audit=audit,
        clock=clock,
    )
    return FactorEnrollment(
        store=store, keyring=keyring, policy=policy, audit=audit, clock=clock, fresh=fresh
    )


def password_checks(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[str]:
    """The hashes ``module.verify_password`` (argon2) is asked to check, in order, recorded
    from now on: what a verification cost, in argon2 runs."""
    checked: list[str] = []
    real = module.verify_password

    def recording(hash: str, password: Secret[str]) -> bool:
        checked.append(hash)
        return bool(real(hash, password))

    monkeypatch.setattr(module, "verify_password", recording)
    return checked
