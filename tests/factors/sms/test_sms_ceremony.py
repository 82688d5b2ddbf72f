"""SMS codes over the real store (SQLite and PostgreSQL): enrollment, sending for a challenge,
verification through the one Verifier pipeline, single use, expiry, resends, rate limits, the
psd2 cap under parallel guesses, provider failures, and nothing leaking to logs or the audit."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from sqlalchemy import text

from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    StepUpRequired,
    TooManyRequests,
)
from piigate.factors.checks import code_checks
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import factor_aad
from piigate.factors.sms import InvalidPhoneNumber, MemorySender
from piigate.factors.sms.ceremony import SmsCeremony
from piigate.factors.sms.codes import SmsCheck
from piigate.factors.sms.dispatch import MAX_CODE_LIFETIME, SentCode, SmsLimits
from piigate.factors.sms.numbers import NumberDigests
from piigate.model import (
    Action,
    Challenge,
    Requirement,
    Resource,
    Transaction,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.stepup.verdicts import (
    FactorUnreadable,
    IssuedGrant,
    Proof,
    VerificationRejected,
    VerificationThrottled,
)
from piigate.stepup.verification import Verifier
from piigate.store import Database, Store
from piigate.store.ports import SqlChallenges
from stepup_support import RecordingAudit, factor_enrollment

T0 = datetime(2026, 5, 4, 10, 0, 7, tzinfo=UTC)
ISSUER = "https://piigate.test"
NUMBER = "+16502530042"
OTHER_NUMBER = "+33612345678"
_CODE = re.compile(r"\b(\d{6})\b")


def policy_text(
    profile: str = "nist-800-63b-4",
    *,
    code_lifetime: str = "5m",
    challenge_ttl: str = "10m",
    max_attempts: int = 5,
) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        levels:
          aal1: {{acr: "urn:piigate:aal1"}}
          aal2: {{acr: "urn:piigate:aal2"}}
          aal3: {{acr: "urn:piigate:aal3"}}
        pii:
          ssn: {{}}
        factors:
          totp: {{level: aal2}}
          sms: {{level: aal2, restricted: true, code_lifetime: {code_lifetime}}}
          recovery: {{level: aal2}}
        rules:
          - name: read-ssn
            when: {{pii: [ssn], action: [read]}}
            require: {{level: aal2, max_age: 5m}}
        stepup: {{challenge_ttl: {challenge_ttl}, max_attempts: {max_attempts}, grant_ttl: 15m}}
        profile: {profile}
        """
    )


@dataclass
class World:
    db: Database
    store: Store
    keyring: Keyring
    clock: FixedClock
    audit: RecordingAudit
    holder: PolicyHolder
    verifier: Verifier
    enrollment: FactorEnrollment
    sms: SmsCeremony
    sender: MemorySender
    challenges: SqlChallenges
    counter: int = 0

    def use_policy(self, text: str) -> None:
        self.holder._policy = compile_policy(load_policy_text(text))

    async def challenge(
        self,
        *,
        subject: str = "alice",
        methods: tuple[str, ...] = ("totp", "sms", "recovery"),
        max_attempts: int = 5,
        ttl: int = 600,
        action: Action = Action.READ,
        transaction: Transaction | None = None,
    ) -> Challenge:
        self.counter += 1
        now = self.clock.now()
        challenge = Challenge(
            id=f"chl_{self.counter}",
            subject_id=subject,
            requirement=Requirement(
                level="aal2", acr_values=("urn:piigate:aal2",), max_age=300, methods=methods
            ),
            action=action,
            pii=frozenset({"ssn"}) if transaction is None else frozenset(),
            resource=Resource("customer", "42"),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
            transaction=transaction,
            decision_id=f"dec_{self.counter}",
            requested_by="key_app",
            max_attempts=max_attempts,
        )
        await self.challenges.create(challenge)
        return challenge

    def last_code(self) -> str:
        found = _CODE.search(self.sender.sent[-1].text.reveal())
        assert found is not None
        return found.group(1)

    async def sms_factor(self, subject: str = "alice", number: str = NUMBER) -> str:
        """An active SMS factor (enrolled and confirmed with the code it was sent)."""
        sent = await self.sms.enroll(subject, number)
        await self.sms.confirm(subject, sent.factor.id, Secret(self.last_code()))
        return sent.factor.id

    async def send(self, challenge: Challenge, subject: str = "alice") -> str:
        await self.sms.send(challenge.id, caller=Caller.person(subject))
        return self.last_code()

    async def verify(
        self, challenge: Challenge, code: str, *, subject: str | None = "alice"
    ) -> IssuedGrant:
        return await self.verifier.verify(
            challenge.id, Proof("sms", Secret(code)), caller=Caller.person(subject)
        )

    async def failures(self, factor_id: str) -> int:
        row = await self.store.get_factor(factor_id)
        assert row is not None
        return row.failures


def build_world(db: Database, tmp_path: Path, limits: SmsLimits | None = None) -> World:
    store = Store(db)
    keyring = Keyring.ephemeral()  # every world its own keys
    clock = FixedClock(T0)
    audit = RecordingAudit()
    holder = PolicyHolder(compile_policy(load_policy_text(policy_text())))
    verifier = Verifier(
        store=store,
        challenges=SqlChallenges(store, keyring),
        keyring=keyring,
        checks=code_checks(store, keyring, audit),
        policy=holder,
        audit=audit,
        clock=clock,
        issuer=ISSUER,
    )
    verifier.register("sms", SmsCheck(store, keyring))
    enrollment = factor_enrollment(
        store=store, keyring=keyring, policy=holder, audit=audit, clock=clock, issuer=ISSUER
    )
    sender = MemorySender()
    sms = SmsCeremony(
        store=store,
        counters=store,
        digests=NumberDigests(store, keyring, clock),
        sender=sender,
        keyring=keyring,
        policy=holder,
        audit=audit,
        clock=clock,
        verifier=verifier,
        enrollment=enrollment,
        limits=limits or SmsLimits(per_subject=100, per_number=100),
    )
    return World(
        db,
        store,
        keyring,
        clock,
        audit,
        holder,
        verifier,
        enrollment,
        sms,
        sender,
        SqlChallenges(store, keyring),
    )


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    yield build_world(db, tmp_path)


async def rejected(world: World, challenge: Challenge, code: str) -> str:
    with pytest.raises(VerificationRejected) as caught:
        await world.verify(challenge, code)
    assert caught.value.problem()["code"] == "factor_rejected"
    return caught.value.reason.value


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# -- enrollment ---------------------------------------------------------------------------------


async def test_enrolment_sends_a_code_and_confirms_the_number(world: World) -> None:
    sent = await world.sms.enroll("alice", "(650) 253-0042", region="US", label="work phone")
    assert isinstance(sent, SentCode)
    assert sent.factor.state == "pending" and sent.factor.kind == "sms"
    assert sent.hint == "+1 •••-•••-••42"
    assert sent.expires_at == T0 + timedelta(seconds=300)
    [message] = world.sender.sent
    assert message.to.e164 == NUMBER
    assert (
        message.text.reveal().startswith("piigate: ") and "add this phone" in message.text.reveal()
    )

    confirmed = await world.sms.confirm("alice", sent.factor.id, Secret(world.last_code()))
    assert confirmed.state == "active" and confirmed.label == "work phone"
    assert confirmed.data == {"hint": "+1 •••-•••-••42"}
    assert confirmed.failures == 0
    # The number is stored as keyring ciphertext bound to the factor id.
    assert confirmed.secret is not None and NUMBER not in confirmed.secret
    assert world.keyring.decrypt(confirmed.secret, aad=factor_aad(confirmed.id)) == NUMBER.encode()
    types = [kind for kind, _, _ in world.audit.events]
    assert types == ["sms_sent", "factor_enrolled", "factor_confirmed"]


async def test_numbers_and_codes_are_encrypted_at_rest(world: World) -> None:
    factor_id = await world.sms_factor()
    challenge = await world.challenge()
    code = await world.send(challenge)
    dumped = []
    async with world.db.connect() as conn:
        for table in ("factors", "ceremonies", "counters", "challenges"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            dumped.append(json.dumps([list(map(str, row)) for row in rows], ensure_ascii=False))
    raw = "\n".join(dumped)
    assert factor_id in raw
    for secret in (NUMBER, NUMBER[1:], "6502530042", "650-253-0042", code):
        assert secret not in raw


async def test_confirmation_refuses_wrong_and_replayed_codes(world: World) -> None:
    sent = await world.sms.enroll("alice", NUMBER)
    code = world.last_code()
    for bad, reason in ((wrong(code), "wrong_code"), ("12ab56", "malformed"), ("", "malformed")):
        with pytest.raises(VerificationRejected) as caught:
            await world.sms.confirm("alice", sent.factor.id, Secret(bad))
        assert caught.value.reason.value == reason
    assert await world.failures(sent.factor.id) == 3
    await world.sms.confirm("alice", sent.factor.id, Secret(code))
    with pytest.raises(Conflict):  # active now: nothing left to confirm
        await world.sms.confirm("alice", sent.factor.id, Secret(code))
    with pytest.raises(NotFound):  # not bob's
        await world.sms.confirm("bob", sent.factor.id, Secret(code))


async def test_confirmation_code_expires(world: World) -> None:
    sent = await world.sms.enroll("alice", NUMBER)
    code = world.last_code()
    world.clock.advance(MAX_CODE_LIFETIME)
    with pytest.raises(VerificationRejected) as caught:
        await world.sms.confirm("alice", sent.factor.id, Secret(code))
    assert caught.value.reason.value == "expired"


async def test_pending_factor_locks_at_the_cap(world: World) -> None:
    world.use_policy(policy_text("psd2"))
    sent = await world.sms.enroll("alice", NUMBER)
    code = world.last_code()
    reasons = []
    for _ in range(6):
        with pytest.raises(VerificationRejected) as caught:
            await world.sms.confirm("alice", sent.factor.id, Secret(wrong(code)))
        reasons.append(caught.value.reason.value)
    assert reasons == ["wrong_code"] * 5 + ["locked"]
    with pytest.raises(VerificationRejected):
        await world.sms.confirm("alice", sent.factor.id, Secret(code))
    assert await world.failures(sent.factor.id) == 5


async def test_a_second_factor_needs_a_fresh_grant(world: World) -> None:
    await world.sms_factor()
    with pytest.raises(StepUpRequired) as caught:
        await world.sms.enroll("alice", OTHER_NUMBER)
    # The refusal carries alice's own step-up; an app's grant would not do.
    app_challenge = await world.challenge()
    app_grant = await world.verify(app_challenge, await world.send(app_challenge))
    with pytest.raises(StepUpRequired):
        await world.sms.enroll("alice", OTHER_NUMBER, grant=app_grant.token)
    challenge = caught.value.challenge
    assert challenge is not None and "sms" in challenge.requirement.methods
    issued = await world.verify(challenge, await world.send(challenge))
    sent = await world.sms.enroll("alice", OTHER_NUMBER, grant=issued.token)
    assert sent.factor.state == "pending"


async def test_enrolment_refuses_bad_numbers_and_policies_without_sms(world: World) -> None:
    with pytest.raises(InvalidPhoneNumber):
        await world.sms.enroll("alice", "+44 20 7946 0958")
    world.use_policy(policy_text().replace("  sms: {level: aal2, restricted: true", "  #"))
    with pytest.raises(Forbidden):
        await world.sms.enroll("alice", NUMBER)
    assert world.sender.sent == [] and await world.store.list_factors("alice") == []


# -- sending and verifying ----------------------------------------------------------------------


async def test_a_code_for_the_challenge_yields_a_grant(world: World) -> None:
    factor_id = await world.sms_factor()
    challenge = await world.challenge()
    sent = await world.sms.send(challenge.id, caller=Caller.person("alice"))
    assert sent.factor.id == factor_id and sent.hint == "+1 •••-•••-••42"
    assert world.sender.sent[-1].text.reveal() == (
        f"piigate: {world.last_code()} is your code to approve viewing ssn. Never share it."
    )
    issued = await world.verify(challenge, world.last_code())
    assert issued.grant.amr == ("sms",) and issued.grant.level == "aal2"
    [verified] = world.audit.of("challenge_verified")
    assert verified["method"] == "sms" and verified["factor_id"] == factor_id


async def test_the_text_names_the_transfer(world: World) -> None:
    await world.sms_factor()
    txn = Transaction(Decimal("12500"), "EUR", "ACME Ltd")
    challenge = await world.challenge(action=Action.TRANSACT, transaction=txn)
    code = await world.send(challenge)
    assert world.sender.sent[-1].text.reveal() == (
        f"piigate: {code} is your code to approve a transfer of 12,500.00 EUR to ACME Ltd. "
        "Never share it."
    )


async def test_the_requesting_app_may_ask_for_the_code_others_may_not(world: World) -> None:
    await world.sms_factor()
    challenge = await world.challenge()
    await world.sms.send(challenge.id, caller=Caller.app("key_app"))
    # Another person, another app, and each kind under the other's id.
    others = (Caller.person("bob"), Caller.app("key_other"), Caller.person("key_app"))
    for caller in (*others, Caller.app("alice")):
        with pytest.raises(NotFound):
            await world.sms.send(challenge.id, caller=caller)
    with pytest.raises(NotFound):
        await world.sms.send("chl_missing", caller=Caller.person("alice"))


async def test_sending_needs_a_pending_sms_challenge_and_an_active_factor(world: World) -> None:
    challenge = await world.challenge()
    with pytest.raises(Conflict, match="no active SMS factor"):
        await world.send(challenge)
    await world.sms_factor()
    with pytest.raises(Conflict, match="cannot be answered with an SMS"):
        await world.send(await world.challenge(methods=("totp",)))
    done = await world.challenge()
    await world.verify(done, await world.send(done))
    with pytest.raises(Conflict, match="no longer pending"):
        await world.send(done)
    late = await world.challenge(ttl=60)
    world.clock.advance(61)
    with pytest.raises(Conflict, match="no longer pending"):
        await world.send(late)


async def test_a_code_is_accepted_once(world: World) -> None:
    await world.sms_factor()
    challenge = await world.challenge()
    code = await world.send(challenge)
    await world.verify(challenge, code)
    # The challenge is spent, and the code does not open another one.
    assert await rejected(world, challenge, code) == "not_pending"
    assert await rejected(world, await world.challenge(), code) == "wrong_code"


async def test_parallel_answers_with_the_right_code_give_one_grant(world: World) -> None:
    await world.sms_factor()
    world.verifier.refusals.base_delay = 0
    challenge = await world.challenge(max_attempts=20)
    code = await world.send(challenge)
    results = await asyncio.gather(
        *(world.verify(challenge, code) for _ in range(6)), return_exceptions=True
    )
    assert sum(isinstance(r, IssuedGrant) for r in results) == 1
    losers = [r for r in results if not isinstance(r, IssuedGrant)]
    assert all(isinstance(r, VerificationRejected) for r in losers)
    assert {r.reason.value for r in losers if isinstance(r, VerificationRejected)} <= {
        "replayed",
        "not_pending",
    }


async def test_an_expired_code_is_refused(world: World) -> None:
    world.use_policy(policy_text(code_lifetime="2m"))
    factor_id = await world.sms_factor()
    challenge = await world.challenge()
    sent = await world.sms.send(challenge.id, caller=Caller.person("alice"))
    assert sent.expires_at == world.clock.now() + timedelta(minutes=2)
    code = world.last_code()
    world.clock.advance(120)
    assert await rejected(world, challenge, code) == "expired"
    [ceremony] = await world.store.list_ceremonies(challenge_id=challenge.id)
    assert ceremony.state == "expired"
    # A fresh code works (after the 1 s back-off of the failure).
    world.clock.advance(1)
    await world.verify(challenge, await world.send(challenge))
    assert await world.failures(factor_id) == 0


async def test_lifetime_never_exceeds_five_minutes_or_the_challenge(world: World) -> None:
    world.use_policy(policy_text(code_lifetime="10m"))
    await world.sms_factor()
    long = await world.sms.send((await world.challenge(ttl=1800)).id, caller=Caller.person("alice"))
    assert long.expires_at == world.clock.now() + timedelta(seconds=MAX_CODE_LIFETIME)
    short = await world.challenge(ttl=90)
    sent = await world.sms.send(short.id, caller=Caller.person("alice"))
    assert sent.expires_at == short.expires_at


async def test_a_resend_voids_the_old_code_but_keeps_the_failures(world: World) -> None:
    factor_id = await world.sms_factor()
    world.verifier.refusals.base_delay = 0
    challenge = await world.challenge(max_attempts=10)
    old = await world.send(challenge)
    assert await rejected(world, challenge, wrong(old)) == "wrong_code"
    assert await rejected(world, challenge, wrong(wrong(old))) == "wrong_code"
    assert await world.failures(factor_id) == 2
    world.clock.advance(5)
    new = await world.send(challenge)
    assert await world.failures(factor_id) == 2  # a new SMS does not reset the count
    if new != old:
        assert await rejected(world, challenge, old) == "wrong_code"
    states = sorted(c.state for c in await world.store.list_ceremonies(challenge_id=challenge.id))
    assert states == ["expired", "open"]
    await world.verify(challenge, new)
    assert await world.failures(factor_id) == 0


async def test_psd2_cap_holds_exactly_under_parallel_guesses(world: World) -> None:
    world.use_policy(policy_text("psd2", max_attempts=100))
    world.verifier.refusals.base_delay = 0  # isolate the cap from the back-off
    factor_id = await world.sms_factor()
    challenges = [await world.challenge(max_attempts=100) for _ in range(3)]
    codes = [await world.send(c) for c in challenges]
    results = await asyncio.gather(
        *(world.verify(challenges[i % 3], wrong(codes[i % 3])) for i in range(30)),
        return_exceptions=True,
    )
    assert all(isinstance(r, VerificationRejected) for r in results)
    reasons = sorted(r.reason.value for r in results if isinstance(r, VerificationRejected))
    assert reasons.count("wrong_code") == 5 and set(reasons) == {"wrong_code", "locked"}
    assert await world.failures(factor_id) == 5
    # Locked: the right code is refused too, uncounted, and no new SMS is sent for it.
    assert await rejected(world, challenges[0], codes[0]) == "locked"
    assert await world.failures(factor_id) == 5
    sent = len(world.sender.sent)
    with pytest.raises(Conflict, match="locked"):
        await world.send(challenges[1])
    assert len(world.sender.sent) == sent


async def test_back_off_applies_to_sms_too(world: World) -> None:
    await world.sms_factor()
    challenge = await world.challenge()
    code = await world.send(challenge)
    assert await rejected(world, challenge, wrong(code)) == "wrong_code"
    with pytest.raises(VerificationThrottled):
        await world.verify(challenge, code)
    world.clock.advance(1)
    await world.verify(challenge, code)


# -- rate limits --------------------------------------------------------------------------------


async def test_sends_are_limited_per_subject(db: Database, tmp_path: Path) -> None:
    world = build_world(db, tmp_path, SmsLimits(per_subject=3, subject_window=600, per_number=100))
    await world.sms_factor()  # the enrolment's code counts too
    challenge = await world.challenge(ttl=3600)
    await world.send(challenge)
    world.clock.advance(60)
    await world.send(challenge)
    world.clock.advance(60)
    with pytest.raises(TooManyRequests) as caught:
        await world.send(challenge)
    assert caught.value.status == 429
    assert caught.value.headers() == {"Retry-After": str(600 - 120)}
    [throttled] = world.audit.of("sms_throttled")
    assert throttled == {"scope": "subject", "purpose": "sms_code", "challenge_id": challenge.id}
    # Another subject is not affected; after the window, sending works again.
    await world.sms_factor("bob", OTHER_NUMBER)
    world.clock.advance(480)
    await world.send(challenge)


async def test_the_code_before_a_refused_resend_still_works(db: Database, tmp_path: Path) -> None:
    world = build_world(db, tmp_path, SmsLimits(per_subject=2, per_number=100))
    await world.sms_factor()
    challenge = await world.challenge()
    code = await world.send(challenge)
    with pytest.raises(TooManyRequests):
        await world.send(challenge)
    await world.verify(challenge, code)


async def test_sends_are_limited_per_number_across_subjects(db: Database, tmp_path: Path) -> None:
    world = build_world(db, tmp_path, SmsLimits(per_subject=100, per_number=3, number_window=3600))
    await world.sms_factor("alice", NUMBER)
    await world.sms_factor("bob", OTHER_NUMBER)
    await world.sms.enroll("carol", "+1 650 253 0042")  # alice's number again: 2 of 3
    await world.sms.enroll("dave", "(650) 253-0042", region="US")  # 3 of 3
    with pytest.raises(TooManyRequests) as caught:
        await world.sms.enroll("erin", NUMBER)
    assert 0 < caught.value.retry_after <= 3600
    assert world.audit.of("sms_throttled")[-1]["scope"] == "number"
    # Another number is not affected.
    await world.sms.enroll("erin", "+4915123456789")
    with pytest.raises(TooManyRequests):
        await world.send(await world.challenge(subject="alice"), "alice")
    await world.send(await world.challenge(subject="bob"), "bob")
    counters = await _raw(world.db, "counters")
    assert "6502530042" not in counters and "612345678" not in counters


async def _raw(db: Database, table: str) -> str:
    async with db.connect() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    return json.dumps([list(map(str, row)) for row in rows])


# -- provider failures --------------------------------------------------------------------------


async def test_a_provider_failure_voids_the_code_and_answers_503(world: World) -> None:
    await world.sms_factor()
    challenge = await world.challenge()
    live = await world.send(challenge)
    world.clock.advance(5)
    world.sender.outage = "http_503"
    with pytest.raises(ServiceUnavailable):
        await world.send(challenge)
    states = sorted(c.state for c in await world.store.list_ceremonies(challenge_id=challenge.id))
    assert states == ["expired", "expired"]  # the resend voided the old code, its own too
    [failed] = world.audit.of("sms_failed")
    assert failed["reason"] == "http_503" and failed["provider"] == "memory"
    # Only the newest code counts, and it was never delivered: the old one is simply wrong now.
    assert await rejected(world, challenge, live) == "wrong_code"


async def test_a_failed_enrolment_leaves_no_pending_factor(world: World) -> None:
    world.sender.outage = "timeout"
    with pytest.raises(ServiceUnavailable):
        await world.sms.enroll("alice", NUMBER)
    assert await world.store.list_factors("alice") == []
    assert world.audit.of("factor_enrolled") == []


async def test_a_number_this_keyring_cannot_read_fails_closed(db: Database, tmp_path: Path) -> None:
    world = build_world(db, tmp_path)
    await world.sms_factor()
    other = build_world(db, tmp_path)
    with pytest.raises(ServiceUnavailable):
        await other.send(await other.challenge())
    assert other.sender.sent == []


async def test_a_code_this_keyring_cannot_read_is_a_503_and_never_counted(world: World) -> None:
    factor_id = await world.sms_factor()
    challenge = await world.challenge()
    code = await world.send(challenge)
    # The code was sealed by keys this verifier does not hold (another deployment's).
    world.verifier.register("sms", SmsCheck(world.store, Keyring.ephemeral()))

    with pytest.raises(FactorUnreadable) as caught:
        await world.verify(challenge, code)

    assert caught.value.problem()["status"] == 503
    assert await world.failures(factor_id) == 0
    row = await world.store.get_challenge(challenge.id)
    assert row is not None and (row.attempts, row.state) == (0, "pending")
    assert world.audit.of("verification_failed") == []


async def test_a_confirmation_code_this_keyring_cannot_read_is_a_503_and_never_counted(
    db: Database, tmp_path: Path
) -> None:
    world = build_world(db, tmp_path)
    sent = await world.sms.enroll("alice", NUMBER)
    other = build_world(db, tmp_path)  # a node with other keys

    with pytest.raises(FactorUnreadable):
        await other.sms.confirm("alice", sent.factor.id, Secret(world.last_code()))

    assert await world.failures(sent.factor.id) == 0
    assert other.audit.of("factor_confirmation_failed") == []


# -- nothing leaks ------------------------------------------------------------------------------


async def test_no_code_or_number_reaches_logs_or_audit(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    world.verifier.refusals.base_delay = 0
    with structlog.testing.capture_logs() as logs:
        await world.sms_factor()
        challenge = await world.challenge(max_attempts=20)
        first = await world.send(challenge)
        with pytest.raises(VerificationRejected):
            await world.verify(challenge, wrong(first))
        world.clock.advance(5)
        await world.send(challenge)
        world.sender.outage = "network"
        with pytest.raises(ServiceUnavailable):
            await world.send(challenge)
        world.sender.outage = None
        world.clock.advance(5)
        await world.verify(challenge, await world.send(challenge))
        with pytest.raises(InvalidPhoneNumber) as invalid:
            await world.sms.enroll("alice", "+1 900 555 0100")
    captured = capsys.readouterr()
    haystack = "\n".join(
        [
            json.dumps(logs, default=str),
            caplog.text,
            captured.out,
            captured.err,
            world.audit.text(),
            json.dumps(invalid.value.problem()),
        ]
    )
    assert any(e["event"] == "sms_delivery_failed" for e in logs)  # logged, without secrets
    assert {"sms_sent", "sms_failed", "verification_failed"} <= {
        t for t, _, _ in world.audit.events
    }
    sent_codes = [world_code(m.text.reveal()) for m in world.sender.sent]
    assert_absent(
        haystack,
        [
            NUMBER,
            "6502530042",
            "650-253-0042",
            "9005550100",
            "900-555-0100",
            wrong(first),
            *sent_codes,
        ],
    )


def world_code(text: str) -> str:
    found = _CODE.search(text)
    assert found is not None
    return found.group(1)


def assert_absent(haystack: str, secrets: list[str]) -> None:
    """No secret appears as a whole digit run (a 6-digit code may sit by chance inside a longer
    number such as a timestamp; that is not a leak)."""
    for secret in secrets:
        pattern = r"(?<!\d)" + re.escape(secret) + r"(?!\d)"
        assert re.search(pattern, haystack) is None, f"leaked: {secret[:2]}…"
