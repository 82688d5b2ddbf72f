"""What one verification costs the store: its units of work (``Database.read``/``write``),
counted, not timed. A TOTP verification is three -- the challenge and the factors read, the
attempt and the failures charged, the step spent with the failures cleared and the challenge
approved -- plus the audit commit, which is the audit log's (here a recorder in memory)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.factors.checks import code_checks
from piigate.factors.ports import factor_aad
from piigate.factors.totp.protocol import hotp_code, totp_step
from piigate.model import (
    Action,
    Challenge,
    ChallengeState,
    Requirement,
    Resource,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.stepup.verdicts import Proof, VerificationRejected
from piigate.stepup.verification import Verifier
from piigate.store import Database, Store
from piigate.store.ports import SqlChallenges
from stepup_support import RecordingAudit

T0 = datetime(2026, 5, 4, 10, 0, 7, tzinfo=UTC)
SECRET = Secret("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")  # base32, RFC 4648
POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:piigate:aal1"}
      aal2: {acr: "urn:piigate:aal2"}
    pii:
      ssn: {}
    factors:
      totp: {level: aal2}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
    stepup: {challenge_ttl: 5m, max_attempts: 5, grant_ttl: 15m}
    profile: nist-800-63b-4
    """
)


class Units:
    """Counts the units of work run on ``db`` while installed."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ran: list[str] = []
        read, write = db.read, db.write

        def counted(kind: str, run: Callable[..., Any]) -> Callable[..., Any]:
            async def unit(work: Callable[..., Any], **options: Any) -> Any:
                self.ran.append(kind)
                return await run(work, **options)

            return unit

        monkeypatch.setattr(db, "read", counted("read", read))
        monkeypatch.setattr(db, "write", counted("write", write))


@pytest.fixture
async def setup(db: Database, tmp_path: Path) -> AsyncIterator[tuple[Store, Verifier, Challenge]]:
    store = Store(db)
    keyring = Keyring.ephemeral()
    clock = FixedClock(T0)
    audit = RecordingAudit()
    challenges = SqlChallenges(store, keyring)
    verifier = Verifier(
        store=store,
        challenges=challenges,
        keyring=keyring,
        checks=code_checks(store, keyring, audit),
        policy=PolicyHolder(compile_policy(load_policy_text(POLICY))),
        audit=audit,
        clock=clock,
        issuer="https://piigate.test",
    )
    sealed = keyring.encrypt(SECRET.reveal().encode("ascii"), aad=factor_aad("fct_1"))
    await store.add_factor(
        id="fct_1", subject_id="alice", kind="totp", now=T0, secret=sealed, state="active"
    )
    challenge = Challenge(
        id="chl_1",
        subject_id="alice",
        requirement=Requirement(
            level="aal2", acr_values=("urn:piigate:aal2",), max_age=300, methods=("totp",)
        ),
        action=Action.READ,
        pii=frozenset({"ssn"}),
        resource=Resource("customer", "42"),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=300),
        requested_by="key_app",
    )
    await challenges.create(challenge)
    yield store, verifier, challenge


async def test_a_totp_verification_is_three_units_of_work(
    setup: tuple[Store, Verifier, Challenge], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, verifier, challenge = setup
    units = Units(store.db, monkeypatch)
    code = Secret(hotp_code(SECRET, totp_step(T0)))
    issued = await verifier.verify(challenge.id, Proof("totp", code), caller=Caller.app("key_app"))
    assert units.ran == ["read", "write", "write"]
    # ... and each did its part: the step spent, the failures cleared, the challenge approved.
    assert issued.grant.challenge_id == challenge.id
    monkeypatch.undo()
    factor = await store.get_factor("fct_1")
    assert factor is not None and factor.last_step == totp_step(T0) and factor.failures == 0
    row = await store.get_challenge(challenge.id)
    assert row is not None and row.state == ChallengeState.APPROVED.value and row.attempts == 1


async def test_a_wrong_code_is_two_units_of_work(
    setup: tuple[Store, Verifier, Challenge], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, verifier, challenge = setup
    units = Units(store.db, monkeypatch)
    wrong = Secret(f"{(int(hotp_code(SECRET, totp_step(T0))) + 1) % 10**6:06d}")
    with pytest.raises(VerificationRejected):
        await verifier.verify(challenge.id, Proof("totp", wrong), caller=Caller.person("alice"))
    assert units.ran == ["read", "write"]
    monkeypatch.undo()
    factor = await store.get_factor("fct_1")
    assert factor is not None and factor.failures == 1 and factor.last_step is None
