"""WebAuthn registration and step-up over the real store (SQLite and PostgreSQL), driven by the
software authenticator of ``tests/webauthn_soft.py``: grants, user verification, origin and RP
id, single-use ceremonies, sign counters, and challenges derived from the request's binding."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring
from piigate.errors import Conflict, StepUpRequired, TooManyRequests
from piigate.factors.checks import code_checks
from piigate.factors.ports import FactorRecord, Settlement
from piigate.factors.webauthn.ceremony import (
    CEREMONIES_PER_CHALLENGE,
    CeremonyOptions,
    WebAuthnCeremonies,
    WebAuthnCheck,
)
from piigate.factors.webauthn.protocol import (
    RelyingParty,
    b64url_decode,
    ceremony_id,
    relying_party,
    stepup_challenge,
)
from piigate.factors.webauthn.responses import sign_count_advances, webauthn_amr
from piigate.model import (
    Action,
    Challenge,
    ChallengeState,
    Requirement,
    Resource,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.stepup.grants import verify_grant
from piigate.stepup.verdicts import (
    CheckFailed,
    IssuedGrant,
    Proof,
    VerificationFailure,
    VerificationRejected,
    VerificationThrottled,
    Verified,
)
from piigate.stepup.verification import Verifier
from piigate.store import Database, Store
from piigate.store.ports import SqlChallenges
from stepup_support import RecordingAudit, factor_enrollment
from webauthn_soft import SoftAuthenticator, b64u, unb64u

T0 = datetime(2026, 5, 4, 10, 0, 7, tzinfo=UTC)
ISSUER = "https://piigate.test"
ORIGIN = "https://piigate.test"
BINDING_A = "sha256:" + "aa" * 32
BINDING_B = "sha256:" + "bb" * 32


def policy_text(user_verification: str = "required") -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        levels:
          aal1: {{acr: "urn:piigate:aal1"}}
          aal2: {{acr: "urn:piigate:aal2"}}
          aal3: {{acr: "urn:piigate:aal3", phishing_resistant: true}}
        pii:
          ssn: {{}}
        factors:
          totp: {{level: aal2}}
          webauthn: {{level: aal3, user_verification: {user_verification}}}
        rules:
          - name: delete-ssn
            when: {{pii: [ssn], action: [delete]}}
            require: {{level: aal3, max_age: 0}}
        stepup: {{challenge_ttl: 5m, max_attempts: 5, grant_ttl: 15m}}
        profile: nist-800-63b-4
        """
    )


@dataclass
class World:
    store: Store
    clock: FixedClock
    audit: RecordingAudit
    holder: PolicyHolder
    verifier: Verifier
    ceremonies: WebAuthnCeremonies
    check: WebAuthnCheck
    challenges: SqlChallenges
    rp: RelyingParty
    counter: int = 0

    def authenticator(self, **kw: Any) -> SoftAuthenticator:
        return SoftAuthenticator(origin=self.rp.origin, **kw)

    async def register(
        self, auth: SoftAuthenticator, subject: str = "alice", grant: str | None = None
    ) -> FactorRecord:
        options = await self.ceremonies.registration_options(subject, grant=grant)
        return await self.ceremonies.register(
            subject, auth.create(options.public_key), label="key", grant=grant
        )

    async def challenge(
        self,
        *,
        subject: str = "alice",
        binding: str | None = None,
        methods: tuple[str, ...] = ("webauthn", "totp"),
        ttl: int = 300,
    ) -> Challenge:
        self.counter += 1
        now = self.clock.now()
        challenge = Challenge(
            id=f"chl_{self.counter}",
            subject_id=subject,
            requirement=Requirement(
                level="aal3",
                acr_values=("urn:piigate:aal3",),
                max_age=0 if binding else 300,
                methods=methods,
                binding=binding,
            ),
            action=Action.DELETE if binding else Action.READ,
            pii=frozenset({"ssn"}),
            resource=Resource("customer", "42"),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
            session_id="s-1",
            device_id="d-1",
            decision_id=f"dec_{self.counter}",
            requested_by="key_app",
        )
        await self.challenges.create(challenge)
        return challenge

    async def options(self, challenge: Challenge) -> CeremonyOptions:
        fresh = await self.challenges.get(challenge.id)
        assert fresh is not None
        return await self.ceremonies.authentication_options(fresh)

    async def verify(self, challenge: Challenge, credential: dict[str, Any]) -> IssuedGrant:
        return await self.verifier.verify(
            challenge.id,
            Proof("webauthn", credential=credential),
            caller=Caller.person(challenge.subject_id),
        )

    async def settle(self, challenge: Challenge, verified: Verified) -> Settlement:
        """Save what a check returned, as ``Verifier.verify`` does after it."""
        return await self.store.settle_verification(
            challenge.id,
            spends=verified.spends,
            reset=[verified.factor.id],
            approval={"method": "webauthn", "factor_id": verified.factor.id},
            now=self.clock.now(),
        )

    async def rejected(self, challenge: Challenge, credential: dict[str, Any]) -> str:
        with pytest.raises(VerificationRejected) as caught:
            await self.verify(challenge, credential)
        problem = caught.value.problem()
        assert problem["code"] == "factor_rejected" and problem["status"] == 401
        # Past the factor's failure back-off (1 s, doubling), so the next attempt is checked.
        self.clock.advance(16)
        return caught.value.reason.value

    async def grant(self, auth: SoftAuthenticator) -> str:
        """A fresh aal3 grant of alice's own from ``auth`` (for changing her factors)."""
        challenge = await self.ceremonies.enrollment.step_up("alice")
        options = await self.options(challenge)
        return (await self.verify(challenge, auth.get(options.public_key))).token


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    store = Store(db)
    keyring = Keyring.ephemeral()
    clock = FixedClock(T0)
    audit = RecordingAudit()
    holder = PolicyHolder(compile_policy(load_policy_text(policy_text())))
    challenges = SqlChallenges(store, keyring)
    verifier = Verifier(
        store=store,
        challenges=challenges,
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
    rp = relying_party(ORIGIN)
    check = WebAuthnCheck(store, holder, rp)
    verifier.register("webauthn", check)
    ceremonies = WebAuthnCeremonies(
        store=store, enrollment=enrollment, policy=holder, audit=audit, clock=clock, rp=rp
    )
    yield World(store, clock, audit, holder, verifier, ceremonies, check, challenges, rp)


def swap_challenge(credential: dict[str, Any], challenge: str) -> dict[str, Any]:
    """The same signature with another challenge written into clientDataJSON."""
    client_data = json.loads(unb64u(credential["response"]["clientDataJSON"]))
    client_data["challenge"] = challenge
    response = {**credential["response"], "clientDataJSON": b64u(json.dumps(client_data).encode())}
    return {**credential, "response": response}


# -- the pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "rp_id", "origin"),
    [
        ("https://piigate.example.com", "piigate.example.com", "https://piigate.example.com"),
        (
            "https://piigate.example.com:443/base/",
            "piigate.example.com",
            "https://piigate.example.com",
        ),
        ("https://Login.Example.com:8443", "login.example.com", "https://login.example.com:8443"),
        ("http://localhost:8080", "localhost", "http://localhost:8080"),
        ("http://localhost:80", "localhost", "http://localhost"),
    ],
)
def test_relying_party_from_the_public_url(url: str, rp_id: str, origin: str) -> None:
    rp = relying_party(url)
    assert (rp.id, rp.origin) == (rp_id, origin)


@pytest.mark.parametrize("url", ["ftp://example.com", "piigate.example.com", "https://:443"])
def test_relying_party_refuses_what_is_no_web_origin(url: str) -> None:
    with pytest.raises(ValueError):
        relying_party(url)


@pytest.mark.parametrize(
    ("stored", "new", "ok"),
    [(0, 0, True), (0, 1, True), (5, 6, True), (5, 5, False), (5, 4, False), (5, 0, False)],
)
def test_sign_count_rule(stored: int, new: int, ok: bool) -> None:
    assert sign_count_advances(stored=stored, new=new) is ok


def test_amr() -> None:
    assert webauthn_amr(user_verified=True, backup_eligible=False) == ("hwk", "user")
    assert webauthn_amr(user_verified=False, backup_eligible=False) == ("hwk",)
    assert webauthn_amr(user_verified=True, backup_eligible=True) == ("swk", "user")


def test_stepup_challenge_depends_on_every_input() -> None:
    nonce = bytes(16)
    base = stepup_challenge(challenge_id="chl_1", binding=BINDING_A, nonce=nonce)
    assert len(base) == 32
    assert base == stepup_challenge(challenge_id="chl_1", binding=BINDING_A, nonce=nonce)
    others = {
        stepup_challenge(challenge_id="chl_2", binding=BINDING_A, nonce=nonce),
        stepup_challenge(challenge_id="chl_1", binding=BINDING_B, nonce=nonce),
        stepup_challenge(challenge_id="chl_1", binding=None, nonce=nonce),
        stepup_challenge(challenge_id="chl_1", binding=BINDING_A, nonce=b"\x01" * 16),
    }
    assert base not in others and len(others) == 4
    assert ceremony_id(base) == ceremony_id(base) != ceremony_id(next(iter(others)))
    assert len(ceremony_id(base)) <= 64


def test_strict_base64url() -> None:
    assert b64url_decode("AQID") == b"\x01\x02\x03"
    assert b64url_decode("AQ") == b"\x01"
    for bad in ("AQ!D", "A Q", "AQ+/", 12, None):
        assert b64url_decode(bad) is None


# -- registration ----------------------------------------------------------------------------------


async def test_registration_stores_an_active_credential(world: World) -> None:
    auth = world.authenticator()
    options = await world.ceremonies.registration_options("alice")
    public_key = options.public_key
    assert public_key["rp"] == {"id": "piigate.test", "name": "piigate"}
    assert public_key["user"]["name"] == "alice"
    assert "alice" not in unb64u(public_key["user"]["id"]).decode("latin-1")
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    assert public_key["attestation"] == "none"
    assert {p["alg"] for p in public_key["pubKeyCredParams"]} == {-7, -8, -257}
    assert public_key["excludeCredentials"] == []
    assert len(unb64u(public_key["challenge"])) == 32
    assert options.ceremony_id == ceremony_id(unb64u(public_key["challenge"]))

    factor = await world.ceremonies.register("alice", auth.create(public_key), label="yubikey")
    assert factor.kind == "webauthn" and factor.state == "active" and factor.label == "yubikey"
    assert factor.secret is None and factor.confirmed_at is not None
    data = factor.data
    assert unb64u(data["credential_id"]) == auth.credential_id
    assert unb64u(data["public_key"]) == auth.cose_key()
    assert data["sign_count"] == 0 and data["transports"] == ["internal"]
    assert data["aaguid"] == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert data["user_verified"] is True and data["backup_eligible"] is False
    assert unb64u(data["user_handle"]) == unb64u(public_key["user"]["id"])
    enrolled = world.audit.of("factor_enrolled")
    assert enrolled[-1]["kind"] == "webauthn" and enrolled[-1]["state"] == "active"
    ceremony = await world.store.get_ceremony(options.ceremony_id)
    assert ceremony is not None and ceremony.state == "used"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"uv": False}, "no_user_verification"),
        ({"origin": "https://evil.test"}, "bad_assertion"),
        ({"rp_id": "evil.test"}, "bad_assertion"),
    ],
)
async def test_registration_refusals(world: World, tamper: dict[str, Any], reason: str) -> None:
    auth = world.authenticator()
    options = await world.ceremonies.registration_options("alice")
    with pytest.raises(VerificationRejected) as caught:
        await world.ceremonies.register("alice", auth.create(options.public_key, **tamper))
    assert caught.value.reason.value == reason
    assert caught.value.problem()["code"] == "factor_rejected"
    assert world.audit.of("factor_confirmation_failed")[-1]["reason"] == reason
    assert await world.store.list_factors("alice") == []


async def test_a_registration_challenge_is_used_once(world: World) -> None:
    options = await world.ceremonies.registration_options("alice")
    first = world.authenticator()
    await world.ceremonies.register("alice", first.create(options.public_key))
    grant = await world.grant(first)
    second = world.authenticator()
    with pytest.raises(VerificationRejected) as caught:
        await world.ceremonies.register("alice", second.create(options.public_key), grant=grant)
    assert caught.value.reason is VerificationFailure.REPLAYED
    # Another subject cannot answer alice's options either.
    other = await world.ceremonies.registration_options("alice", grant=grant)
    with pytest.raises(VerificationRejected) as caught:
        await world.ceremonies.register("bob", world.authenticator().create(other.public_key))
    assert caught.value.reason is VerificationFailure.BAD_ASSERTION
    assert len(await world.store.list_factors("alice")) == 1
    assert await world.store.list_factors("bob") == []


async def test_an_expired_registration_is_refused(world: World) -> None:
    options = await world.ceremonies.registration_options("alice")
    world.clock.advance(301)
    with pytest.raises(VerificationRejected) as caught:
        await world.ceremonies.register("alice", world.authenticator().create(options.public_key))
    assert caught.value.reason is VerificationFailure.EXPIRED
    ceremony = await world.store.get_ceremony(options.ceremony_id)
    assert ceremony is not None and ceremony.state == "expired"


async def test_a_second_credential_needs_a_fresh_grant(world: World) -> None:
    first = world.authenticator()
    await world.register(first)
    with pytest.raises(StepUpRequired):
        await world.ceremonies.registration_options("alice")
    grant = await world.grant(first)
    options = await world.ceremonies.registration_options("alice", grant=grant)
    excluded = [unb64u(c["id"]) for c in options.public_key["excludeCredentials"]]
    assert excluded == [first.credential_id]
    second = world.authenticator()
    factor = await world.ceremonies.register(
        "alice", second.create(options.public_key), grant=grant
    )
    # One user handle per subject, reused for every credential.
    assert second.user_handle == first.user_handle
    assert factor.data["user_handle"] == b64u(first.user_handle or b"")
    # The same authenticator twice: refused.
    again = await world.ceremonies.registration_options("alice", grant=grant)
    with pytest.raises(Conflict):
        await world.ceremonies.register("alice", second.create(again.public_key), grant=grant)


async def test_registration_options_are_rate_limited(world: World) -> None:
    for _ in range(10):
        await world.ceremonies.registration_options("alice")
    with pytest.raises(TooManyRequests):
        await world.ceremonies.registration_options("alice")
    world.clock.advance(601)
    await world.ceremonies.registration_options("alice")


async def test_malformed_registration(world: World) -> None:
    for credential in ({}, {"response": {"clientDataJSON": "!!"}}, {"response": "x"}):
        with pytest.raises(VerificationRejected) as caught:
            await world.ceremonies.register("alice", credential)
        assert caught.value.reason is VerificationFailure.MALFORMED


# -- step-up ---------------------------------------------------------------------------------------


async def test_step_up_with_a_security_key(world: World) -> None:
    auth = world.authenticator()
    factor = await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    public_key = options.public_key
    assert public_key["rpId"] == "piigate.test"
    assert public_key["userVerification"] == "required"
    assert public_key["allowCredentials"] == [
        {"id": b64u(auth.credential_id), "type": "public-key", "transports": ["internal"]}
    ]
    assert options.expires_at <= challenge.expires_at

    issued = await world.verify(challenge, auth.get(public_key))
    grant = verify_grant(
        issued.token,
        keyring=world.verifier.keyring,
        issuer=ISSUER,
        now=T0,
        expected_subject="alice",
    )
    assert grant.level == "aal3" and grant.amr == ("hwk", "user")
    assert grant.challenge_id == challenge.id and grant.binding is None
    stored = await world.store.get_factor(factor.id)
    assert stored is not None and stored.data["sign_count"] == 1 and stored.failures == 0
    verified = world.audit.of("challenge_verified")[-1]
    assert verified["method"] == "webauthn" and verified["factor_id"] == factor.id
    assert verified["sign_count"] == 1 and verified["user_verified"] is True
    assert verified["amr"] == ["hwk", "user"]


async def test_the_challenge_is_derived_from_the_binding(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge(binding=BINDING_A)
    options = await world.options(challenge)
    ceremony = await world.store.get_ceremony(options.ceremony_id)
    assert ceremony is not None and ceremony.purpose == "webauthn_auth"
    assert ceremony.challenge_id == challenge.id and ceremony.state == "open"
    nonce = unb64u(ceremony.data["nonce"])
    expected = stepup_challenge(challenge_id=challenge.id, binding=BINDING_A, nonce=nonce)
    assert unb64u(options.public_key["challenge"]) == expected
    # Every ceremony of the same challenge gets a fresh nonce, hence a fresh challenge.
    again = await world.options(challenge)
    assert again.public_key["challenge"] != options.public_key["challenge"]

    issued = await world.verify(challenge, auth.get(options.public_key))
    assert issued.grant.binding == BINDING_A and issued.grant.single_use


async def test_an_assertion_for_another_request_is_refused(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    a = await world.challenge(binding=BINDING_A)
    b = await world.challenge(binding=BINDING_B)
    options_a = await world.options(a)
    options_b = await world.options(b)
    for_a = auth.get(options_a.public_key)
    # Challenge B answered with what the user approved for request A.
    assert await world.rejected(b, for_a) == "bad_assertion"
    # A's signature with B's challenge written into clientDataJSON: the signature breaks.
    assert await world.rejected(b, swap_challenge(for_a, options_b.public_key["challenge"])) == (
        "bad_assertion"
    )
    # That attempt spent B's ceremony (spent before the signature is checked).
    assert await world.rejected(b, auth.get(options_b.public_key)) == "replayed"
    # A, still pending, takes its own assertion; B answered with new options works.
    granted_a = await world.verify(a, for_a)
    assert granted_a.grant.binding == BINDING_A
    granted_b = await world.verify(b, auth.get((await world.options(b)).public_key))
    assert granted_b.grant.binding == BINDING_B
    assert world.audit.reasons() == ["bad_assertion", "bad_assertion", "replayed"]


async def test_no_user_verification_is_refused(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    assert await world.rejected(challenge, auth.get(options.public_key, uv=False)) == (
        "no_user_verification"
    )


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"origin": "https://piigate.test.evil.example"}, "bad_assertion"),
        ({"origin": "http://piigate.test"}, "bad_assertion"),
        ({"rp_id": "evil.test"}, "bad_assertion"),
        ({"client_data_extra": {"crossOrigin": True}}, "bad_assertion"),
        ({"client_data_extra": {"type": "webauthn.create"}}, "bad_assertion"),
    ],
)
async def test_origin_and_rp_id_must_match(
    world: World, tamper: dict[str, Any], reason: str
) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    assert await world.rejected(challenge, auth.get(options.public_key, **tamper)) == reason


async def test_a_replayed_assertion_is_refused(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    assertion = auth.get(options.public_key)
    factors = await world.store.list_factors("alice", kinds=["webauthn"])
    proof = Proof("webauthn", credential=assertion)
    # The check returns the ceremony to spend; of two answers checked before either is saved,
    # the second to be saved loses the ceremony's compare-and-set: a replay.
    now = world.clock.now()
    first = await world.check.check(challenge, proof, factors, now)
    second = await world.check.check(challenge, proof, factors, now)
    assert (await world.settle(challenge, first)).refused is None
    lost = (await world.settle(challenge, second)).refused
    assert lost is not None and world.check.refusal(lost) is VerificationFailure.REPLAYED
    # Once saved, the ceremony is spent: the check itself refuses the same answer.
    with pytest.raises(CheckFailed) as caught:
        await world.check.check(challenge, proof, factors, now)
    assert caught.value.reason is VerificationFailure.REPLAYED

    # Through the verifier: the first answer approves the challenge, the same one again fails.
    other = await world.challenge()
    assertion = auth.get((await world.options(other)).public_key)
    await world.verify(other, assertion)
    assert await world.rejected(other, assertion) == "not_pending"


async def test_a_failed_answer_spends_the_ceremony(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    assert await world.rejected(challenge, auth.get(options.public_key, uv=False)) == (
        "no_user_verification"
    )
    # A proper signature over the same options: the WebAuthn challenge was single use.
    assert await world.rejected(challenge, auth.get(options.public_key)) == "replayed"
    # New options work.
    await world.verify(challenge, auth.get((await world.options(challenge)).public_key))


async def test_parallel_answers_give_one_grant(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge()
    assertion = auth.get((await world.options(challenge)).public_key)
    results = await asyncio.gather(
        *(world.verify(challenge, assertion) for _ in range(4)), return_exceptions=True
    )
    granted = [r for r in results if isinstance(r, IssuedGrant)]
    assert len(granted) == 1
    # The others: refused (replayed, or the challenge no longer pending), or held back by the
    # failure back-off that a parallel loser already started (429).
    refused = [r for r in results if not isinstance(r, IssuedGrant)]
    assert all(isinstance(r, VerificationRejected | VerificationThrottled) for r in refused)
    assert {r.reason.value for r in refused} <= {"replayed", "not_pending", "throttled"}


async def test_sign_count_regression_is_refused(world: World) -> None:
    auth = world.authenticator()
    factor = await world.register(auth)
    first = await world.challenge()
    await world.verify(first, auth.get((await world.options(first)).public_key, counter=7))
    for counter in (7, 3):  # equal, then lower: a cloned authenticator
        challenge = await world.challenge()
        options = await world.options(challenge)
        assert await world.rejected(challenge, auth.get(options.public_key, counter=counter)) == (
            "sign_count_regressed"
        )
    stored = await world.store.get_factor(factor.id)
    assert stored is not None and stored.data["sign_count"] == 7


async def test_a_lost_sign_count_race_is_refused(world: World) -> None:
    auth = world.authenticator()
    factor = await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    stale = await world.store.list_factors("alice", kinds=["webauthn"])
    # Another assertion of the same credential saved counter 9 since the factor was read.
    newer = {**factor.data, "sign_count": 9}
    assert await world.store.replace_factor_data(
        factor.id, expected_data=factor.data, new_data=newer
    )
    proof = Proof("webauthn", credential=auth.get(options.public_key, counter=5))
    # Checked against the stale row the counter advances; saved, it is judged on the row.
    verified = await world.check.check(challenge, proof, stale, world.clock.now())
    lost = (await world.settle(challenge, verified)).refused
    assert lost is not None
    assert world.check.refusal(lost) is VerificationFailure.SIGN_COUNT_REGRESSED
    # A counter beyond the winner's is saved on the fresh row.
    other = await world.challenge()
    proof = Proof(
        "webauthn", credential=auth.get((await world.options(other)).public_key, counter=12)
    )
    verified = await world.check.check(other, proof, stale, world.clock.now())
    assert verified.detail["sign_count"] == 12
    assert (await world.settle(other, verified)).refused is None
    stored = await world.store.get_factor(factor.id)
    assert stored is not None and stored.data["sign_count"] == 12


async def test_authenticators_without_a_counter(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    for _ in range(2):
        challenge = await world.challenge()
        await world.verify(
            challenge, auth.get((await world.options(challenge)).public_key, counter=0)
        )


async def test_an_expired_ceremony_is_refused(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge(ttl=900)
    options = await world.options(challenge)
    world.clock.advance(301)
    assert await world.rejected(challenge, auth.get(options.public_key)) == "expired"


async def test_an_unknown_credential_is_refused(world: World) -> None:
    await world.register(world.authenticator())
    stranger = world.authenticator()
    await world.register(stranger, subject="bob")
    challenge = await world.challenge()
    options = await world.options(challenge)
    # Bob's genuine key, over alice's options: not one of alice's credentials.
    stranger.user_handle = None
    assert await world.rejected(challenge, stranger.get(options.public_key)) == "bad_assertion"


async def test_malformed_proofs(world: World) -> None:
    await world.register(world.authenticator())
    challenge = await world.challenge()
    with pytest.raises(VerificationRejected) as caught:
        await world.verifier.verify(challenge.id, Proof("webauthn"), caller=Caller.person("alice"))
    assert caught.value.reason is VerificationFailure.MALFORMED
    world.clock.advance(16)
    for credential in ({"response": {}}, {"response": {"clientDataJSON": b64u(b"[1]")}}):
        assert await world.rejected(challenge, credential) == "malformed"


async def test_preferred_user_verification_accepts_presence_only(world: World) -> None:
    world.holder._policy = compile_policy(load_policy_text(policy_text("preferred")))
    auth = world.authenticator(user_verifying=False)
    await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    assert options.public_key["userVerification"] == "preferred"
    issued = await world.verify(challenge, auth.get(options.public_key))
    assert issued.grant.amr == ("hwk",)


async def test_a_synced_passkey_is_a_software_key(world: World) -> None:
    auth = world.authenticator(backup_eligible=True)
    factor = await world.register(auth)
    assert factor.data["backup_eligible"] is True
    challenge = await world.challenge()
    issued = await world.verify(challenge, auth.get((await world.options(challenge)).public_key))
    assert issued.grant.amr == ("swk", "user")


async def test_options_only_for_challenges_webauthn_may_answer(world: World) -> None:
    with pytest.raises(Conflict):  # no credential registered yet
        await world.options(await world.challenge())
    await world.register(world.authenticator())
    with pytest.raises(Conflict):
        await world.options(await world.challenge(methods=("totp",)))
    expired = await world.challenge(ttl=10)
    world.clock.advance(11)
    with pytest.raises(Conflict):
        await world.options(expired)
    approved = await world.challenge()
    await world.store.set_challenge_state(approved.id, expected="pending", new="approved")
    with pytest.raises(Conflict):
        await world.options(approved)
    stored = await world.challenges.get(approved.id)
    assert stored is not None and stored.state is ChallengeState.APPROVED


async def test_options_per_challenge_are_capped(world: World) -> None:
    await world.register(world.authenticator())
    challenge = await world.challenge()
    for _ in range(CEREMONIES_PER_CHALLENGE):
        await world.options(challenge)
    with pytest.raises(TooManyRequests):
        await world.options(challenge)


async def test_the_audit_never_holds_signatures_or_client_data(world: World) -> None:
    auth = world.authenticator()
    await world.register(auth)
    challenge = await world.challenge()
    options = await world.options(challenge)
    good = auth.get(options.public_key)
    bad = auth.get((await world.options(challenge)).public_key, uv=False)
    await world.rejected(challenge, bad)
    await world.verify(challenge, good)
    text = json.dumps(world.audit.events, default=str)
    for credential in (good, bad):
        for value in credential["response"].values():
            assert value not in text
    assert options.public_key["challenge"] not in text


async def test_an_authenticator_registered_to_one_subject_is_refused_for_another(
    world: World,
) -> None:
    shared = world.authenticator()
    await world.register(shared, "alice")
    with pytest.raises(Conflict, match="already registered"):
        await world.register(shared, "bob")
    assert await world.store.list_factors("bob") == []
    # Another authenticator is welcome.
    await world.register(world.authenticator(), "bob")
    assert len(await world.store.list_factors("bob")) == 1
