"""The verifier and enrollment over the real store (SQLite and PostgreSQL): TOTP and recovery
codes, replay, per-factor failure caps under parallel guessing, back-off, grants."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.errors import Conflict, NotFound, StepUpRequired
from piigate.factors.checks import code_checks
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import factor_aad
from piigate.factors.totp.ceremony import TotpCheck
from piigate.factors.totp.protocol import hotp_code, totp_step
from piigate.model import (
    Action,
    Challenge,
    ChallengeState,
    Method,
    Requirement,
    Resource,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.stepup.grants import verify_grant
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
from stepup_support import RecordingAudit, factor_enrollment, password_checks

T0 = datetime(2026, 5, 4, 10, 0, 7, tzinfo=UTC)
ISSUER = "https://piigate.test"
BINDING = "sha256:" + "ab" * 32


def policy_text(profile: str = "nist-800-63b-4", max_attempts: int = 5) -> str:
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
          recovery: {{level: aal2}}
        rules:
          - name: read-ssn
            when: {{pii: [ssn], action: [read]}}
            require: {{level: aal2, max_age: 5m}}
        stepup: {{challenge_ttl: 5m, max_attempts: {max_attempts}, grant_ttl: 15m}}
        profile: {profile}
        """
    )


@dataclass
class World:
    store: Store
    keyring: Keyring
    clock: FixedClock
    audit: RecordingAudit
    holder: PolicyHolder
    verifier: Verifier
    enrollment: FactorEnrollment
    challenges: SqlChallenges
    counter: int = 0

    def use_policy(self, text: str) -> None:
        self.holder._policy = compile_policy(load_policy_text(text))

    async def challenge(
        self,
        *,
        subject: str = "alice",
        requested_by: str | None = "key_app",
        binding: str | None = None,
        max_age: int | None = 300,
        methods: tuple[str, ...] = ("totp", "recovery"),
        max_attempts: int = 5,
        ttl: int = 300,
    ) -> Challenge:
        self.counter += 1
        now = self.clock.now()
        challenge = Challenge(
            id=f"chl_{self.counter}",
            subject_id=subject,
            requirement=Requirement(
                level="aal2",
                acr_values=("urn:piigate:aal2",),
                max_age=max_age,
                methods=methods,
                binding=binding,
            ),
            action=Action.READ,
            pii=frozenset({"ssn"}),
            resource=Resource("customer", "42"),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
            session_id="s-1",
            device_id="d-1",
            decision_id=f"dec_{self.counter}",
            requested_by=requested_by,
            max_attempts=max_attempts,
        )
        await self.challenges.create(challenge)
        return challenge

    async def own_challenge(self, subject: str = "alice") -> Challenge:
        """The subject's own step-up for changing factors (``POST /v1/challenges``)."""
        return await self.enrollment.step_up(subject)

    async def verify(
        self, challenge: Challenge, method: str, code: str, *, subject: str | None = "alice"
    ) -> IssuedGrant:
        return await self.verifier.verify(
            challenge.id, Proof(method, Secret(code)), caller=Caller.person(subject)
        )

    async def totp_factor(self, subject: str = "alice") -> tuple[str, Secret[str]]:
        """An active TOTP factor (enrolled and confirmed one step before now)."""
        started = await self.enrollment.start_totp(subject, label="phone")
        earlier = self.clock.now() - timedelta(seconds=30)
        code = hotp_code(started.secret, totp_step(earlier))
        self.clock.set(earlier)
        await self.enrollment.confirm_totp(subject, started.factor.id, Secret(code))
        self.clock.advance(30)
        return started.factor.id, started.secret

    def code(self, secret: Secret[str], *, at: datetime | None = None) -> str:
        return hotp_code(secret, totp_step(at or self.clock.now()))


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    store = Store(db)
    keyring = Keyring.ephemeral()
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
    enrollment = factor_enrollment(
        store=store, keyring=keyring, policy=holder, audit=audit, clock=clock, issuer=ISSUER
    )
    yield World(
        store, keyring, clock, audit, holder, verifier, enrollment, SqlChallenges(store, keyring)
    )


async def rejected(world: World, challenge: Challenge, method: str, code: str) -> str:
    with pytest.raises(VerificationRejected) as caught:
        await world.verify(challenge, method, code)
    # The client's view is the same whatever went wrong.
    problem = caught.value.problem()
    assert problem["code"] == "factor_rejected" and problem["status"] == 401
    assert problem["detail"] == "Verification failed"
    return caught.value.reason.value


# -- TOTP ---------------------------------------------------------------------------------------


async def test_totp_yields_a_grant_for_the_challenge(world: World) -> None:
    factor_id, secret = await world.totp_factor()
    challenge = await world.challenge()
    code = world.code(secret)
    issued = await world.verify(challenge, "totp", code)

    grant = verify_grant(
        issued.token,
        keyring=world.keyring,
        issuer=ISSUER,
        now=world.clock.now(),
        expected_subject="alice",
    )
    assert grant == issued.grant
    assert grant.level == "aal2" and grant.amr == ("otp",)
    assert grant.scope == frozenset({("ssn", "read")})
    assert grant.session_id == "s-1" and grant.device_id == "d-1"
    assert grant.binding is None and grant.challenge_id == challenge.id
    # max_age 5m caps the policy's 15m grant_ttl.
    assert grant.expires_at - grant.auth_time == timedelta(seconds=300)
    assert (await world.challenges.get(challenge.id)).state is ChallengeState.APPROVED  # type: ignore[union-attr]
    row = await world.store.get_factor(factor_id)
    assert row is not None and row.failures == 0 and row.last_step == totp_step(T0)

    [event] = world.audit.of("challenge_verified")
    assert event["factor_id"] == factor_id and event["grant_id"] == grant.id
    assert event["method"] == "totp" and event["level"] == "aal2"
    assert code not in world.audit.text() and issued.token not in world.audit.text()
    assert secret.reveal() not in world.audit.text()
    assert issued.token not in repr(issued)


async def test_a_code_is_accepted_once_even_across_challenges(world: World) -> None:
    factor_id, secret = await world.totp_factor()
    code = world.code(secret)
    await world.verify(await world.challenge(), "totp", code)
    assert await rejected(world, await world.challenge(), "totp", code) == "replayed"
    # The enrolment code's step (one before) is spent too, even though it is in the window.
    world.clock.advance(2)
    earlier = world.code(secret, at=world.clock.now() - timedelta(seconds=30))
    assert await rejected(world, await world.challenge(), "totp", earlier) == "replayed"
    [*_, last] = world.audit.of("verification_failed")
    assert last["reason"] == "replayed" and last["factor_id"] == factor_id


async def test_parallel_verifications_of_one_code_give_one_grant(world: World) -> None:
    _, secret = await world.totp_factor()
    code = world.code(secret)
    challenges = [await world.challenge() for _ in range(5)]
    results = await asyncio.gather(
        *(world.verify(c, "totp", code) for c in challenges), return_exceptions=True
    )
    assert sum(isinstance(r, IssuedGrant) for r in results) == 1
    assert all(
        isinstance(r, IssuedGrant | VerificationRejected | VerificationThrottled) for r in results
    )


async def test_bound_challenge_gives_a_single_use_bound_grant(world: World) -> None:
    _, secret = await world.totp_factor()
    challenge = await world.challenge(binding=BINDING, max_age=0)
    issued = await world.verify(challenge, "totp", world.code(secret))
    assert issued.grant.binding == BINDING and issued.grant.single_use
    # Not capped by max_age (0 = this one request): the policy's grant_ttl applies.
    assert issued.grant.expires_at - issued.grant.auth_time == timedelta(minutes=15)


async def test_wrong_code_is_counted_then_backs_off(world: World) -> None:
    factor_id, secret = await world.totp_factor()
    challenge = await world.challenge()
    good = world.code(secret)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    assert await rejected(world, challenge, "totp", wrong) == "wrong_code"
    row = await world.store.get_factor(factor_id)
    assert row is not None and row.failures == 1
    # Immediately again: the 1 s back-off answers 429 without checking (or counting) the code.
    with pytest.raises(VerificationThrottled) as caught:
        await world.verify(challenge, "totp", good)
    assert caught.value.status == 429 and caught.value.headers() == {"Retry-After": "1"}
    assert (await world.store.get_factor(factor_id)).failures == 1  # type: ignore[union-attr]
    world.clock.advance(1)
    await world.verify(challenge, "totp", world.code(secret))
    assert (await world.store.get_factor(factor_id)).failures == 0  # type: ignore[union-attr]
    reasons = [e["reason"] for e in world.audit.of("verification_failed")]
    assert reasons == ["wrong_code", "throttled"]


async def test_malformed_codes_are_counted_failures(world: World) -> None:
    factor_id, _ = await world.totp_factor()
    assert await rejected(world, await world.challenge(), "totp", "12ab56") == "malformed"
    assert (await world.store.get_factor(factor_id)).failures == 1  # type: ignore[union-attr]


async def test_psd2_cap_holds_exactly_under_parallel_guesses(world: World) -> None:
    world.use_policy(policy_text("psd2", max_attempts=100))
    world.verifier.refusals.base_delay = 0  # isolate the cap from the back-off
    factor_id, secret = await world.totp_factor()
    challenges = [await world.challenge(max_attempts=100) for _ in range(5)]
    good = world.code(secret)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    results = await asyncio.gather(
        *(world.verify(challenges[i % 5], "totp", wrong) for i in range(50)),
        return_exceptions=True,
    )
    assert all(isinstance(r, VerificationRejected) for r in results)
    reasons = sorted(r.reason.value for r in results if isinstance(r, VerificationRejected))
    assert reasons.count("wrong_code") == 5
    assert set(reasons) == {"wrong_code", "locked"}
    row = await world.store.get_factor(factor_id)
    assert row is not None and row.failures == 5
    # Locked: even the right code is refused now, and not counted.
    assert await rejected(world, await world.challenge(), "totp", good) == "locked"
    assert (await world.store.get_factor(factor_id)).failures == 5  # type: ignore[union-attr]


async def test_nist_profile_allows_more_failures(world: World) -> None:
    world.verifier.refusals.base_delay = 0
    factor_id, secret = await world.totp_factor()
    challenge = await world.challenge(max_attempts=20)
    wrong = f"{(int(world.code(secret)) + 1) % 1_000_000:06d}"
    for _ in range(10):
        assert await rejected(world, challenge, "totp", wrong) == "wrong_code"
    assert (await world.store.get_factor(factor_id)).failures == 10  # type: ignore[union-attr]
    await world.verify(challenge, "totp", world.code(secret))


async def test_conditional_failure_count_in_the_store(world: World) -> None:
    factor_id, _ = await world.totp_factor()
    counts = await asyncio.gather(
        *(world.store.record_factor_failure(factor_id, now=T0, limit=3) for _ in range(20))
    )
    assert sorted(counts)[:3] == [1, 2, 3] and all(c == 4 for c in sorted(counts)[3:])
    assert (await world.store.get_factor(factor_id)).failures == 3  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await world.store.record_factor_failure("fct_missing", now=T0, limit=3)


# -- challenge rules ----------------------------------------------------------------------------


async def test_only_the_subject_or_the_requesting_app_may_verify(world: World) -> None:
    _, secret = await world.totp_factor()
    challenge = await world.challenge()
    code = world.code(secret)
    # Another person, another app, and each kind under the other's id.
    others = [Caller.person("bob"), Caller.app("key_other"), Caller.person("key_app")]
    for caller in [*others, Caller.app("alice")]:
        with pytest.raises(NotFound):
            await world.verifier.verify(challenge.id, Proof("totp", Secret(code)), caller=caller)
    with pytest.raises(NotFound):
        await world.verifier.verify(
            "chl_missing", Proof("totp", Secret(code)), caller=Caller.person("alice")
        )
    issued = await world.verifier.verify(
        challenge.id, Proof("totp", Secret(code)), caller=Caller.app("key_app")
    )
    assert issued.grant.subject_id == "alice"
    assert world.audit.of("verification_failed") == []


async def test_expired_challenge_is_rejected(world: World) -> None:
    _, secret = await world.totp_factor()
    challenge = await world.challenge(ttl=60)
    world.clock.advance(60)
    assert await rejected(world, challenge, "totp", world.code(secret)) == "expired"
    assert (await world.challenges.get(challenge.id)).state is ChallengeState.EXPIRED  # type: ignore[union-attr]


async def test_approved_challenge_is_not_verified_twice(world: World) -> None:
    _, secret = await world.totp_factor()
    challenge = await world.challenge()
    await world.verify(challenge, "totp", world.code(secret))
    world.clock.advance(30)
    assert await rejected(world, challenge, "totp", world.code(secret)) == "not_pending"


async def test_too_many_attempts_deny_the_challenge(world: World) -> None:
    world.verifier.refusals.base_delay = 0
    _, secret = await world.totp_factor()
    challenge = await world.challenge(max_attempts=2)
    assert await rejected(world, challenge, "totp", "000000") in {"wrong_code", "replayed"}
    assert await rejected(world, challenge, "totp", "000000") in {"wrong_code", "replayed"}
    assert (await world.challenges.get(challenge.id)).state is ChallengeState.DENIED  # type: ignore[union-attr]
    assert await rejected(world, challenge, "totp", world.code(secret)) == "not_pending"


async def test_attempts_over_the_cap_are_refused_unchecked(world: World) -> None:
    _, secret = await world.totp_factor()
    challenge = await world.challenge(max_attempts=1)
    await world.store.record_attempt(challenge.id, now=T0)  # spent elsewhere
    assert await rejected(world, challenge, "totp", world.code(secret)) == "too_many_attempts"
    assert (await world.challenges.get(challenge.id)).state is ChallengeState.DENIED  # type: ignore[union-attr]


@pytest.mark.parametrize("method", ["push", "approval"])
async def test_out_of_band_methods_are_not_answered_with_a_code(world: World, method: str) -> None:
    extra = "  push: {level: aal2, number_matching: true}\n  approval: {level: aal2}\n"
    world.use_policy(policy_text().replace("  recovery: {level: aal2}\n", extra))
    await world.totp_factor()
    challenge = await world.challenge(methods=("push", "approval"))
    assert await rejected(world, challenge, method, "123456") == "method_not_allowed"


@pytest.mark.parametrize("method", ["sms", "webauthn", "password", "recovery"])
async def test_methods_outside_the_challenge_are_rejected(world: World, method: str) -> None:
    await world.totp_factor()
    challenge = await world.challenge(methods=("totp",))
    assert await rejected(world, challenge, method, "123456") == "method_not_allowed"
    [event] = world.audit.of("verification_failed")
    assert event["method"] in {"sms", "webauthn", "recovery", "unknown"}


async def test_no_active_factor(world: World) -> None:
    await world.enrollment.start_totp("alice")  # pending only
    assert await rejected(world, await world.challenge(), "totp", "123456") == "no_factor"


async def unreadable(world: World, challenge: Challenge, code: str) -> dict[str, object]:
    """Verify, expecting the server fault of a secret the keyring cannot open: its problem."""
    with pytest.raises(FactorUnreadable) as caught:
        await world.verify(challenge, "totp", code)
    problem = caught.value.problem()
    assert problem["status"] == 503 and problem["code"] == "factor_unreadable"
    return problem


async def test_an_unreadable_secret_is_a_503_and_never_a_counted_failure(world: World) -> None:
    world.verifier.refusals.base_delay = 0
    factor_id, secret = await world.totp_factor()
    await rejected(world, await world.challenge(), "totp", "000000")  # one real failure
    before = await world.store.get_factor(factor_id)
    assert before is not None and before.failures == 1
    # A node whose keys do not open the secret (another deployment's keyring).
    world.verifier.register("totp", TotpCheck(Keyring.ephemeral()))
    challenge = await world.challenge()

    for _ in range(3):
        world.clock.advance(5)  # the time of the last failure is kept too
        await unreadable(world, challenge, world.code(secret))

    after = await world.store.get_factor(factor_id)
    assert after is not None
    assert (after.failures, after.last_failure_at) == (1, before.last_failure_at)
    row = await world.store.get_challenge(challenge.id)
    assert row is not None and row.attempts == 0 and row.state == "pending"
    assert [e["reason"] for e in world.audit.of("verification_failed")] == ["wrong_code"]


async def test_a_readable_factor_checked_beside_an_unreadable_one_keeps_its_failure(
    world: World,
) -> None:
    world.verifier.refusals.base_delay = 0
    readable, _ = await world.totp_factor()
    foreign = "fct_foreign"
    await world.store.add_factor(
        id=foreign,
        subject_id="alice",
        kind="totp",
        now=world.clock.now(),
        secret=Keyring.ephemeral().encrypt(b"JBSWY3DPEHPK3PXP", aad=factor_aad(foreign)),
        state="active",
    )
    challenge = await world.challenge()

    await unreadable(world, challenge, "000000")  # checked (wrongly) against `readable` only

    failures = {f: (await world.store.get_factor(f)).failures for f in (readable, foreign)}  # type: ignore[union-attr]
    assert failures == {readable: 1, foreign: 0}
    row = await world.store.get_challenge(challenge.id)
    assert row is not None and row.attempts == 1  # a code was checked: the attempt counts


# -- recovery codes -----------------------------------------------------------------------------


async def recovery_codes(world: World) -> list[str]:
    _, secret = await world.totp_factor()
    issued = await world.verify(await world.own_challenge(), "totp", world.code(secret))
    created = await world.enrollment.new_recovery_codes("alice", grant=issued.token)
    return [c.reveal() for c in created.codes]


async def test_recovery_code_works_once(world: World) -> None:
    codes = await recovery_codes(world)
    assert len(codes) == len(set(codes)) == 10
    issued = await world.verify(await world.challenge(), "recovery", codes[3].upper())
    assert issued.grant.amr == ("kba",) and issued.grant.level == "aal2"
    # A spent code's hash is gone: it is simply no code any more.
    assert await rejected(world, await world.challenge(), "recovery", codes[3]) == "wrong_code"
    world.clock.advance(1)  # past the back-off
    assert await rejected(world, await world.challenge(), "recovery", "not a code") == "malformed"
    [used] = world.audit.of("recovery_code_used")
    assert used["remaining"] == 9
    text = world.audit.text()
    assert not any(code in text for code in codes)
    row = (await world.store.list_factors("alice", kinds=["recovery"]))[0]
    assert all(code not in json.dumps(row.data) for code in codes)


async def test_a_recovery_code_attempt_costs_one_argon2_verification(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set is stored with each code's tag: an attempt verifies the code the tag points at
    (or one dummy), not all ten. A set stored before there were tags still works, hash by hash."""
    from piigate.factors.recovery import protocol as recovery

    codes = await recovery_codes(world)
    [row] = await world.store.list_factors("alice", kinds=["recovery"])
    assert row.data["tags"] == [recovery.recovery_code_tag(Secret(c)) for c in codes]
    calls = password_checks(monkeypatch, recovery)
    world.verifier.refusals.base_delay = 0
    await world.verify(await world.challenge(), "recovery", codes[4])
    assert calls == [row.data["hashes"][4]]
    calls.clear()
    wrong = next(
        c
        for c in recovery.generate_recovery_codes(50)
        if recovery.recovery_code_tag(c) not in row.data["tags"]
    )
    assert await rejected(world, await world.challenge(), "recovery", wrong.reveal()) == (
        "wrong_code"
    )
    assert len(calls) == 1 and calls[0] not in row.data["hashes"]
    # Stored without tags (an older set): every hash checked, and the code still works.
    [row] = await world.store.list_factors("alice", kinds=["recovery"])
    untagged = {"hashes": row.data["hashes"]}
    assert await world.store.replace_factor_data(row.id, expected_data=row.data, new_data=untagged)
    calls.clear()
    await world.verify(await world.challenge(), "recovery", codes[5])
    assert len(calls) == 10


async def test_parallel_spends_of_two_codes_both_succeed(world: World) -> None:
    codes = await recovery_codes(world)
    # Each attempt is charged a failure before its check, so without this the slower of two
    # parallel attempts may meet the other's in-flight failure and be told to back off.
    world.verifier.refusals.base_delay = 0
    first, second = await asyncio.gather(
        world.verify(await world.challenge(), "recovery", codes[0]),
        world.verify(await world.challenge(), "recovery", codes[1]),
    )
    assert first.grant.amr == second.grant.amr == ("kba",)
    [row] = await world.store.list_factors("alice", kinds=["recovery"])
    hashes = row.data["hashes"]
    assert hashes[0] is None and hashes[1] is None and sum(h is not None for h in hashes) == 8


async def test_recovery_code_unlocks_a_locked_totp(world: World) -> None:
    world.use_policy(policy_text("psd2", max_attempts=100))
    codes = await recovery_codes(world)
    world.verifier.refusals.base_delay = 0
    [totp] = await world.store.list_factors("alice", kinds=["totp"])
    challenge = await world.challenge(max_attempts=100)
    for _ in range(6):
        await rejected(world, challenge, "totp", "000000")
    assert (await world.store.get_factor(totp.id)).failures == 5  # type: ignore[union-attr]
    await world.verify(await world.challenge(), "recovery", codes[0])
    assert (await world.store.get_factor(totp.id)).failures == 0  # type: ignore[union-attr]
    [used] = world.audit.of("recovery_code_used")
    assert used["unlocked"] == [totp.id]
    # The subject's other channels are named for notification (the recovery codes are not one).
    assert used["notify"] == [totp.id]


async def test_new_recovery_codes_replace_the_old(world: World) -> None:
    old = await recovery_codes(world)
    issued = await world.verify(await world.own_challenge(), "recovery", old[0])
    new = await world.enrollment.new_recovery_codes("alice", grant=issued.token)
    assert len(await world.store.list_factors("alice", kinds=["recovery"])) == 1
    assert await rejected(world, await world.challenge(), "recovery", old[1]) == "wrong_code"
    world.clock.advance(1)  # past the back-off
    await world.verify(await world.challenge(), "recovery", new.codes[0].reveal())


# -- enrollment ---------------------------------------------------------------------------------


async def test_totp_enrollment_encrypts_and_confirms(world: World) -> None:
    started = await world.enrollment.start_totp("alice", label="phone")
    assert started.factor.state == "pending"
    assert started.uri.reveal().startswith("otpauth://totp/")
    assert started.secret.reveal() in started.uri.reveal()
    assert started.qr_svg.startswith("<svg")
    assert started.secret.reveal() not in repr(started)
    row = await world.store.get_factor(started.factor.id)
    assert row is not None and row.secret is not None
    assert started.secret.reveal() not in row.secret
    plain = world.keyring.decrypt(row.secret, aad=factor_aad(row.id)).decode()
    assert plain == started.secret.reveal()

    with pytest.raises(VerificationRejected):
        await world.enrollment.confirm_totp("alice", row.id, Secret("000000"))
    with pytest.raises(NotFound):
        await world.enrollment.confirm_totp("bob", row.id, Secret(world.code(started.secret)))
    confirmed = await world.enrollment.confirm_totp(
        "alice", row.id, Secret(world.code(started.secret))
    )
    assert confirmed.state == "active" and confirmed.last_step == totp_step(T0)
    assert confirmed.failures == 0
    with pytest.raises(Conflict):
        await world.enrollment.confirm_totp("alice", row.id, Secret(world.code(started.secret)))
    types = [kind for kind, _, _ in world.audit.events]
    assert types == ["factor_enrolled", "factor_confirmation_failed", "factor_confirmed"]
    assert started.secret.reveal() not in world.audit.text()


async def test_changing_factors_needs_a_fresh_grant(world: World) -> None:
    first, secret = await world.totp_factor()
    with pytest.raises(StepUpRequired) as caught:
        await world.enrollment.start_totp("alice")
    assert caught.value.headers()["WWW-Authenticate"] == (
        'Bearer error="insufficient_user_authentication", '
        'acr_values="urn:piigate:aal2", max_age=300'
    )
    # The refusal opens alice's own step-up: hers, at the level the change needs.
    own = caught.value.challenge
    assert own is not None and await world.challenges.get(own.id) == own
    assert (own.subject_id, own.audience, own.requested_by) == ("alice", "user:alice", None)
    assert (own.requirement.level, own.requirement.max_age) == ("aal2", 300)
    assert own.requirement.methods == ("totp", "recovery")
    assert (own.resource.type, own.requirement.binding) == ("manage_factors", None)
    [created] = world.audit.of("challenge_created")
    assert created == {
        "challenge_id": own.id,
        "purpose": "manage_factors",
        "level": "aal2",
        "max_age": 300,
        "methods": ["totp", "recovery"],
    }
    with pytest.raises(StepUpRequired):
        await world.enrollment.new_recovery_codes("alice")
    with pytest.raises(StepUpRequired):
        await world.enrollment.remove("alice", first)

    # A grant an app obtained for its decision is the app's: it changes no factor.
    app_grant = await world.verify(await world.challenge(), "totp", world.code(secret))
    assert app_grant.grant.audience is None  # this fixture's challenges name no audience
    with pytest.raises(StepUpRequired):
        await world.enrollment.start_totp("alice", grant=app_grant.token)
    world.clock.advance(30)
    issued = await world.verify(own, "totp", world.code(secret))
    assert issued.grant.audience == "user:alice"
    # The last factor that is not a recovery code cannot go.
    with pytest.raises(Conflict):
        await world.enrollment.remove("alice", first, grant=issued.token)
    second = await world.enrollment.start_totp("alice", grant=issued.token)
    await world.enrollment.confirm_totp(
        "alice", second.factor.id, Secret(world.code(second.secret))
    )
    # A grant older than five minutes is not fresh (nor valid: it lives as long as that).
    world.clock.advance(301)
    with pytest.raises(StepUpRequired):
        await world.enrollment.remove("alice", first, grant=issued.token)
    world.clock.set(T0 + timedelta(seconds=40))
    await world.enrollment.remove("alice", first, grant=issued.token)
    assert [f.id for f in await world.store.list_factors("alice")] == [second.factor.id]
    # Another subject's grant does nothing; a pending factor goes without one.
    pending = await world.enrollment.start_totp("alice", grant=issued.token)
    with pytest.raises(NotFound):
        await world.enrollment.remove("bob", pending.factor.id)
    await world.enrollment.remove("alice", pending.factor.id)


async def test_bound_or_weaker_grants_do_not_authorise_changes(world: World) -> None:
    _, secret = await world.totp_factor()
    bound = await world.verify(
        await world.challenge(binding=BINDING, max_age=0), "totp", world.code(secret)
    )
    with pytest.raises(StepUpRequired):
        await world.enrollment.start_totp("alice", grant=bound.token)


async def test_without_an_active_factor_there_is_no_step_up_to_open(world: World) -> None:
    with pytest.raises(Conflict):
        await world.own_challenge()
    assert world.audit.of("challenge_created") == []


async def test_a_factor_demoted_by_a_reload_cannot_answer(world: World) -> None:
    _, secret = await world.totp_factor()
    challenge = await world.challenge()  # asks for aal2
    world.use_policy(policy_text().replace("totp: {level: aal2}", "totp: {level: aal1}"))
    reason = await rejected(world, challenge, "totp", world.code(secret))
    assert reason == "method_not_allowed"


async def test_a_stronger_factor_is_added_by_proving_the_strongest_one_held(world: World) -> None:
    extra = "  recovery: {level: aal2}\n  webauthn: {level: aal3}\n"
    world.use_policy(policy_text().replace("  recovery: {level: aal2}\n", extra))
    _, secret = await world.totp_factor()
    now = world.clock.now()
    with pytest.raises(StepUpRequired) as caught:
        await world.enrollment.authorise_addition("alice", Method.WEBAUTHN, None, now)
    assert 'acr_values="urn:piigate:aal2"' in caught.value.headers()["WWW-Authenticate"]
    # TOTP is the strongest alice holds: proving it lets her add a security key (aal3).
    own = caught.value.challenge
    assert own is not None and own.requirement.level == "aal2"
    issued = await world.verify(own, "totp", world.code(secret))
    await world.enrollment.authorise_addition("alice", Method.WEBAUTHN, issued.token, now)
    # Once she holds an aal3 factor, an aal2 grant no longer suffices for another one.
    await world.store.add_factor(
        id="fct_key", subject_id="alice", kind="webauthn", now=now, state="active"
    )
    with pytest.raises(StepUpRequired) as caught:
        await world.enrollment.authorise_addition("alice", Method.WEBAUTHN, issued.token, now)
    assert 'acr_values="urn:piigate:aal3"' in caught.value.headers()["WWW-Authenticate"]
    # Adding a weaker factor needs only that factor's level.
    await world.enrollment.authorise_addition("alice", Method.TOTP, issued.token, now)
