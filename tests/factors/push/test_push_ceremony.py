"""Push approval with number matching, over the real store (SQLite and PostgreSQL): the device
protocol (factors.push), enrollment, device authentication, sending, answering, fatigue and the
``denied_push`` risk signal (risk.recorded)."""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.errors import BadRequest, Conflict, NotFound, StepUpRequired, TooManyRequests
from piigate.factors.checks import code_checks
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.push.answers import PushClosed
from piigate.factors.push.ceremony import PushCeremony, PushDecision
from piigate.factors.push.devices import DeviceRejected, EnrollmentRejected, SignedRequest
from piigate.factors.push.protocol import (
    DeviceAlgorithm,
    DeviceKey,
    DeviceKeyError,
    DevicePrivateKey,
    DeviceSignatureError,
    canonical_request,
    enroll_uri,
    generate_device_key,
    new_nonce,
    new_push_number,
    parse_enroll_uri,
    parse_public_key,
    public_jwk,
    sign_request,
    verify_signature,
)
from piigate.model import (
    AccessRequest,
    Action,
    Challenge,
    ChallengeState,
    Requirement,
    Resource,
    RiskAssessment,
    Signal,
    Subject,
    Transaction,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import CarriedRisk
from piigate.risk.recorded import RecordedRisk
from piigate.stepup.verdicts import VerificationRejected, VerificationThrottled
from piigate.stepup.verification import Verifier
from piigate.store import Database, Store
from piigate.store.ports import SqlChallenges
from stepup_support import RecordingAudit, factor_enrollment

T0 = datetime(2026, 5, 4, 10, 0, 7, tzinfo=UTC)
ISSUER = "https://piigate.test"
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
      push: {level: aal2, number_matching: true}
      recovery: {level: aal2}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
    risk: {denied_push: 35}
    stepup: {challenge_ttl: 10m, max_attempts: 3, grant_ttl: 15m}
    profile: nist-800-63b-4
    """
)
PAYEE = "DE89370400440532013000"


@dataclass
class RecordingRelay:
    name: str = "recording"
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def notify(self, *, device_id: str, push_id: str) -> bool:
        self.calls.append((device_id, push_id))
        return True


@dataclass
class Device:
    id: str
    key: DevicePrivateKey


@dataclass
class World:
    store: Store
    keyring: Keyring
    clock: FixedClock
    audit: RecordingAudit
    verifier: Verifier
    enrollment: FactorEnrollment
    challenges: SqlChallenges
    push: PushCeremony
    relay: RecordingRelay
    risk: RecordedRisk
    counter: int = 0

    async def challenge(
        self,
        *,
        subject: str = "alice",
        methods: tuple[str, ...] = ("push", "totp"),
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
            action=Action.TRANSACT if transaction else Action.READ,
            pii=frozenset({"ssn"}),
            resource=Resource("customer", "42"),
            created_at=now,
            expires_at=now + timedelta(seconds=600),
            transaction=transaction,
            session_id="s-1",
            decision_id=f"dec_{self.counter}",
            requested_by="key_app",
            max_attempts=3,
        )
        await self.challenges.create(challenge)
        return challenge

    def signed(
        self,
        device_id: str,
        key: DevicePrivateKey,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        at: datetime | None = None,
        nonce: str | None = None,
    ) -> SignedRequest:
        timestamp = int((at or self.clock.now()).timestamp())
        nonce = nonce or new_nonce()
        message = canonical_request(
            device_id=device_id,
            method=method,
            target=target,
            timestamp=timestamp,
            nonce=nonce,
            body=body,
        )
        return SignedRequest(
            device_id, method, target, str(timestamp), nonce, sign_request(key, message), body
        )

    async def start(self, subject: str = "alice", grant: str | None = None) -> tuple[str, str]:
        """A pending push factor: ``(factor id, token)``."""
        started = await self.push.devices.start_enrollment(subject, label="phone", grant=grant)
        return started.factor.id, parse_enroll_uri(started.uri.reveal()).token

    async def complete(
        self, token: str, alg: DeviceAlgorithm = DeviceAlgorithm.ES256, name: str = "pixel"
    ) -> Device:
        key = generate_device_key(alg)
        request = self.signed("", key, "POST", "/v1/devices", b"{}")
        factor = await self.push.devices.complete_enrollment(
            request, token=Secret(token), public_key=public_jwk(key), alg=alg.value, name=name
        )
        return Device(factor.id, key)

    async def device(self, subject: str = "alice") -> Device:
        _, token = await self.start(subject)
        return await self.complete(token)

    async def answer(
        self, device: Device, push_id: str, decision: PushDecision, number: int | None = None
    ) -> ChallengeState:
        row = await self.store.get_factor(device.id)
        assert row is not None
        return await self.push.answers.answer(row, push_id, decision, number)

    async def reason(self, device: Device, push_id: str, number: int | None) -> str:
        with pytest.raises(VerificationRejected) as caught:
            await self.answer(device, push_id, PushDecision.APPROVE, number)
        problem = caught.value.problem()
        assert problem["status"] == 401 and problem["code"] == "factor_rejected"
        return caught.value.reason.value

    async def closed(
        self,
        device: Device,
        push_id: str,
        decision: PushDecision = PushDecision.APPROVE,
        number: int | None = None,
    ) -> tuple[str, str]:
        """An answer to a push that can no longer be answered: what the device is told (409),
        and the exact reason audited."""
        with pytest.raises(PushClosed) as caught:
            await self.answer(device, push_id, decision, number)
        problem = caught.value.problem()
        assert problem["status"] == 409 and problem["code"] == "push_closed"
        return caught.value.detail, self.audit.of("verification_failed")[-1]["reason"]


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    store = Store(db)
    keyring = Keyring.ephemeral()
    clock = FixedClock(T0)
    audit = RecordingAudit()
    holder = PolicyHolder(compile_policy(load_policy_text(POLICY)))
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
    relay = RecordingRelay()
    push = PushCeremony(
        store=store,
        counters=store,
        challenges=challenges,
        keyring=keyring,
        policy=holder,
        audit=audit,
        clock=clock,
        verifier=verifier,
        enrollment=enrollment,
        public_url="https://piigate.test/",
        relay=relay,
    )
    risk = RecordedRisk(CarriedRisk(), store, holder)
    yield World(store, keyring, clock, audit, verifier, enrollment, challenges, push, relay, risk)


def other_number(number: int) -> int:
    return 10 + (number - 10 + 1) % 90


# -- the protocol (pure) ------------------------------------------------------------------------


def test_the_canonical_string_is_exactly_as_documented() -> None:
    message = canonical_request(
        device_id="fct_1",
        method="post",
        target="/v1/devices/pushes/psh_1?x=1",
        timestamp=1777888999,
        nonce="abcdefghijklmnop",
        body=b'{"decision":"deny"}',
    )
    digest = hashlib.sha256(b'{"decision":"deny"}').hexdigest()
    assert (
        message
        == (
            "PIIGATE-DEVICE-V1\nfct_1\nPOST\n/v1/devices/pushes/psh_1?x=1\n1777888999\n"
            f"abcdefghijklmnop\n{digest}"
        ).encode()
    )
    # No body is the digest of b"".
    empty = canonical_request(
        device_id="", method="GET", target="/", timestamp=0, nonce="n" * 16, body=b""
    )
    assert empty.endswith(b"\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


@pytest.mark.parametrize("alg", list(DeviceAlgorithm))
def test_signatures_verify_and_tampering_fails(alg: DeviceAlgorithm) -> None:
    key = generate_device_key(alg)
    public = parse_public_key(public_jwk(key), alg.value)
    message = b"PIIGATE-DEVICE-V1\nfct_1\nGET\n/\n1\nnonce\nabc"
    signature = sign_request(key, message)
    assert "=" not in signature and len(base64.urlsafe_b64decode(signature + "==")) == 64
    verify_signature(public, message, signature=signature)
    for bad_message, bad_signature in (
        (message + b"x", signature),
        (message, sign_request(generate_device_key(alg), message)),
        (message, signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")),
        (message, ""),
        (message, "!" * 86),
    ):
        with pytest.raises(DeviceSignatureError):
            verify_signature(public, bad_message, signature=bad_signature)


def test_es256_signatures_are_raw_r_s_not_der() -> None:
    key = generate_device_key(DeviceAlgorithm.ES256)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    public = parse_public_key(public_jwk(key), "ES256")
    der = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(DeviceSignatureError):
        verify_signature(public, b"m", signature=base64.urlsafe_b64encode(der).decode())


def test_public_keys_in_every_accepted_format() -> None:
    key = generate_device_key(DeviceAlgorithm.ES256)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forms = [
        public_jwk(key),
        pem.decode(),
        base64.b64encode(spki).decode(),
        base64.urlsafe_b64encode(spki).decode().rstrip("="),
    ]
    parsed = {parse_public_key(form, "ES256") for form in forms}
    assert parsed == {DeviceKey(DeviceAlgorithm.ES256, spki)}
    stored = parsed.pop()
    assert DeviceKey.decoded("ES256", stored.encoded()) == stored

    ed = generate_device_key(DeviceAlgorithm.EDDSA)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    p384_pem = p384.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    private_jwk = {**public_jwk(key), "d": "AAAA"}
    for value, alg in (
        (public_jwk(key), "EdDSA"),  # the algorithm must fit the key
        (public_jwk(ed), "ES256"),
        (p384_pem, "ES256"),  # only P-256
        (private_jwk, "ES256"),  # never a private key
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "ES256"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB", "x": "A"}, "ES256"),
        ("not a key", "ES256"),
        (public_jwk(key), "RS256"),
        ("A" * 5000, "ES256"),
    ):
        with pytest.raises(DeviceKeyError):
            parse_public_key(value, alg)


def test_push_numbers_are_two_digits_and_vary() -> None:
    numbers = [new_push_number() for _ in range(2000)]
    assert all(10 <= n <= 99 for n in numbers)
    assert len(set(numbers)) > 60


def test_enrollment_uris() -> None:
    uri = enroll_uri("https://piigate.example/base/", "cer_1.secret-token")
    assert uri.startswith("piigate-push://enroll?")
    link = parse_enroll_uri(uri)
    assert link.url == "https://piigate.example/base" and link.token == "cer_1.secret-token"
    for bad in (
        "https://piigate.example/enroll?url=x&token=y",
        "piigate-push://other?url=https://x&token=y",
        "piigate-push://enroll?token=y",
        "piigate-push://enroll?url=ftp://x&token=y",
        "piigate-push://enroll?url=https://x&token=y&token=z",
    ):
        with pytest.raises(ValueError):
            parse_enroll_uri(bad)


# -- enrollment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", list(DeviceAlgorithm))
async def test_enrollment_activates_the_factor(world: World, alg: DeviceAlgorithm) -> None:
    started = await world.push.devices.start_enrollment("alice", label="phone")
    assert started.factor.state == "pending" and started.factor.kind == "push"
    assert started.expires_at == T0 + timedelta(minutes=10)
    assert started.qr_svg.startswith("<svg")
    link = parse_enroll_uri(started.uri.reveal())
    assert link.url == "https://piigate.test"
    # The token is kept only as its SHA-256.
    ceremonies = await world.store.list_ceremonies(subject_id="alice", purposes=["push_enroll"])
    assert len(ceremonies) == 1 and ceremonies[0].secret is not None
    assert ceremonies[0].secret.startswith("sha256:") and link.token not in ceremonies[0].secret
    assert link.token.split(".")[1] not in json.dumps(world.audit.events)

    device = await world.complete(link.token, alg, name="Alice's phone")
    factor = await world.store.get_factor(device.id)
    assert factor is not None and factor.id == started.factor.id
    assert factor.state == "active" and factor.confirmed_at == T0
    assert factor.data["alg"] == alg.value and factor.data["device_name"] == "Alice's phone"
    assert DeviceKey.decoded(alg.value, factor.data["public_key"]) == parse_public_key(
        public_jwk(device.key), alg.value
    )
    assert world.audit.of("factor_confirmed") == [
        {"factor_id": device.id, "kind": "push", "alg": alg.value}
    ]
    # The new device authenticates at once.
    request = world.signed(device.id, device.key, "GET", "/v1/devices/pending")
    assert (await world.push.devices.authenticate(request)).id == device.id


async def test_enrollment_tokens_are_single_use_and_expire(world: World) -> None:
    _, token = await world.start()
    await world.complete(token)
    with pytest.raises(EnrollmentRejected) as caught:
        await world.complete(token)
    assert caught.value.status == 401
    assert world.audit.of("push_enrollment_refused")[-1]["reason"] == "reused"

    # A second device needs a fresh grant; the policy-free route here is a new subject.
    factor_id, late = await world.start("bob")
    world.clock.advance(601)
    with pytest.raises(EnrollmentRejected):
        await world.complete(late)
    assert world.audit.of("push_enrollment_refused")[-1]["reason"] == "expired"
    pending = await world.store.get_factor(factor_id)
    assert pending is not None and pending.state == "pending"

    _, token = await world.start("carol")
    ceremony_id, _, secret = token.partition(".")
    for forged in (f"{ceremony_id}.{secret[:-1]}x", "cer_unknown.x", "", "." * 300):
        with pytest.raises(EnrollmentRejected):
            await world.complete(forged)
    await world.complete(token)  # the right token still works


async def test_enrollment_needs_proof_of_possession(world: World) -> None:
    _, token = await world.start()
    key = generate_device_key(DeviceAlgorithm.ES256)
    other = generate_device_key(DeviceAlgorithm.ES256)
    for request in (
        world.signed("", other, "POST", "/v1/devices"),  # signed with another key
        world.signed("fct_x", key, "POST", "/v1/devices"),  # with a device id
        world.signed("", key, "POST", "/v1/devices", at=T0 - timedelta(seconds=61)),
    ):
        with pytest.raises(BadRequest):
            await world.push.devices.complete_enrollment(
                request, token=Secret(token), public_key=public_jwk(key), alg="ES256", name="x"
            )
    with pytest.raises(BadRequest) as caught:
        await world.push.devices.complete_enrollment(
            world.signed("", key, "POST", "/v1/devices"),
            token=Secret(token),
            public_key=public_jwk(key),
            alg="EdDSA",
            name="x",
        )
    assert caught.value.extra == {"field": "public_key"}
    # None of that spent the token.
    await world.push.devices.complete_enrollment(
        world.signed("", key, "POST", "/v1/devices"),
        token=Secret(token),
        public_key=public_jwk(key),
        alg="ES256",
        name="x",
    )


async def test_a_second_factor_needs_a_fresh_grant(world: World) -> None:
    await world.device()
    with pytest.raises(StepUpRequired):
        await world.push.devices.start_enrollment("alice")


# -- device authentication ----------------------------------------------------------------------


async def test_device_requests_must_be_signed_fresh_and_unique(world: World) -> None:
    device = await world.device()
    ok = world.signed(device.id, device.key, "GET", "/v1/devices/pending?wait=5")
    assert (await world.push.devices.authenticate(ok)).id == device.id

    def refused(reason: str) -> None:
        assert world.audit.of("device_rejected")[-1] == {"factor_id": device.id, "reason": reason}

    # The same request again (same nonce): a replay.
    with pytest.raises(DeviceRejected) as caught:
        await world.push.devices.authenticate(ok)
    assert caught.value.status == 401 and caught.value.code == "device_unauthorized"
    refused("replayed_nonce")
    # Within ±60 s is fine, beyond is not.
    skewed = world.signed(
        device.id, device.key, "GET", "/v1/devices/pending", at=T0 + timedelta(seconds=60)
    )
    await world.push.devices.authenticate(skewed)
    for at in (T0 + timedelta(seconds=61), T0 - timedelta(seconds=61)):
        with pytest.raises(DeviceRejected):
            await world.push.devices.authenticate(
                world.signed(device.id, device.key, "GET", "/v1/devices/pending", at=at)
            )
        refused("stale_or_malformed")
    # Another key, another path or another body than signed.
    impostor = generate_device_key(DeviceAlgorithm.ES256)
    signed = world.signed(device.id, device.key, "POST", "/v1/devices/pushes/psh_1", b"{}")
    for request in (
        world.signed(device.id, impostor, "GET", "/v1/devices/pending"),
        replace(signed, body=b'{"decision":"approve"}'),
        replace(signed, target="/v1/devices/pushes/psh_2"),
        replace(signed, method="PUT"),
    ):
        with pytest.raises(DeviceRejected):
            await world.push.devices.authenticate(request)
        refused("bad_signature")
    # Malformed nonce, unknown device, a pending factor.
    with pytest.raises(DeviceRejected):
        await world.push.devices.authenticate(
            world.signed(device.id, device.key, "GET", "/", nonce="short")
        )
    with pytest.raises(DeviceRejected) as unknown:
        await world.push.devices.authenticate(world.signed("fct_nope", device.key, "GET", "/"))
    assert unknown.value.reason == "unknown_device"
    pending_id, _ = await world.start("dora")
    with pytest.raises(DeviceRejected):
        await world.push.devices.authenticate(world.signed(pending_id, device.key, "GET", "/"))


# -- sending and answering ----------------------------------------------------------------------


async def test_a_push_approved_with_the_right_number(world: World) -> None:
    device = await world.device()
    challenge = await world.challenge(transaction=Transaction(Decimal("12000.50"), "EUR", PAYEE))
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"))
    assert sent.sent and 10 <= sent.number <= 99 and sent.devices == (device.id,)
    assert sent.expires_at == T0 + timedelta(seconds=300)
    assert world.relay.calls == [(device.id, sent.push_id)]
    shown = await world.push.shown(challenge)
    assert shown is not None and shown.number == sent.number

    factor = await world.store.get_factor(device.id)
    assert factor is not None
    pending = await world.push.pending(factor)
    assert [p.id for p in pending] == [sent.push_id]
    # The device sees what it approves, payee included (decrypted for it).
    assert pending[0].challenge.transaction == Transaction(Decimal("12000.50"), "EUR", PAYEE)

    state = await world.answer(device, sent.push_id, PushDecision.APPROVE, sent.number)
    assert state is ChallengeState.APPROVED
    stored = await world.challenges.get(challenge.id)
    assert stored is not None and stored.state is ChallengeState.APPROVED
    assert stored.approval is not None and stored.approval.amr == ("mca", "pop")
    assert stored.approval.factor_id == device.id and stored.approval.method == "push"
    row = await world.store.get_challenge(challenge.id)  # the stored JSON, as it always was
    assert row is not None and row.approval is not None
    assert row.approval["amr"] == ["mca", "pop"] and row.approval["method"] == "push"
    assert await world.push.shown(stored) is None
    assert await world.push.pending(factor) == []

    issued = await world.verifier.collect(stored)
    assert issued is not None and issued.grant.amr == ("mca", "pop")
    assert issued.grant.level == "aal2" and issued.grant.subject_id == "alice"
    again = await world.challenges.get(challenge.id)
    assert again is not None and await world.verifier.collect(again) is None

    # A replayed answer finds the push closed, and the device is told so.
    answered = ("this request was already answered", "replayed")
    assert await world.closed(device, sent.push_id, number=sent.number) == answered
    assert await world.closed(device, sent.push_id, PushDecision.DENY) == answered
    verified = world.audit.of("challenge_verified")
    assert len(verified) == 1 and verified[0]["amr"] == ["mca", "pop"]
    # The number never reaches the audit trail.
    assert all("number" not in data for _, _, data in world.audit.events)


async def test_one_open_push_per_challenge(world: World) -> None:
    await world.device()
    challenge = await world.challenge()
    first = await world.push.send(challenge.id, caller=Caller.person("alice"))
    world.clock.advance(10)
    again = await world.push.send(challenge.id, caller=Caller.app("key_app"))
    assert not again.sent and (again.push_id, again.number) == (first.push_id, first.number)
    assert len(world.relay.calls) == 1 and len(world.audit.of("push_sent")) == 1
    # Once it expired, a new push (with a new expiry) is sent.
    world.clock.advance(300)
    assert await world.push.shown(challenge) is None
    third = await world.push.send(challenge.id, caller=Caller.person("alice"))
    assert third.sent and third.push_id != first.push_id
    expired = await world.store.get_ceremony(first.push_id)
    assert expired is not None and expired.state == "expired"


async def test_send_checks_caller_challenge_and_devices(world: World) -> None:
    challenge = await world.challenge()
    with pytest.raises(NotFound):
        await world.push.send(challenge.id, caller=Caller.person("mallory"))
    with pytest.raises(Conflict):  # no device yet
        await world.push.send(challenge.id, caller=Caller.person("alice"))
    device = await world.device()
    totp_only = await world.challenge(methods=("totp",))
    with pytest.raises(Conflict):
        await world.push.send(totp_only.id, caller=Caller.person("alice"))
    with pytest.raises(Conflict):
        await world.push.send(challenge.id, caller=Caller.person("alice"), factor_id="fct_other")
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"), factor_id=device.id)
    assert sent.devices == (device.id,)
    world.clock.advance(601)
    with pytest.raises(Conflict):
        await world.push.send(challenge.id, caller=Caller.person("alice"))


def count_units(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store's units of work (``Database.read``/``write``) run while installed, in order."""
    ran: list[str] = []

    def counted(kind: str, run: Callable[..., Any]) -> Callable[..., Any]:
        async def unit(work: Callable[..., Any], **options: Any) -> Any:
            ran.append(kind)
            return await run(work, **options)

        return unit

    monkeypatch.setattr(db, "read", counted("read", db.read))
    monkeypatch.setattr(db, "write", counted("write", db.write))
    return ran


async def test_a_push_answer_runs_through_the_verifiers_pipeline(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approval is the Verifier's pipeline: the push and its challenge read, then the
    attempt charged, then one settling write -- the push closed ``approved`` with who answered,
    the device's failures cleared and the challenge approved, its grant left to collect."""
    device = await world.device()
    challenge = await world.challenge()
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"))
    row = await world.store.get_factor(device.id)
    assert row is not None
    wrong = other_number(sent.number)

    ran = count_units(world.store.db, monkeypatch)
    with pytest.raises(VerificationRejected):
        await world.push.answers.answer(row, sent.push_id, PushDecision.APPROVE, wrong)
    assert ran == ["read", "read", "write"]  # refused once charged: nothing else written
    world.clock.advance(1)  # past the back-off
    ran.clear()
    state = await world.push.answers.answer(row, sent.push_id, PushDecision.APPROVE, sent.number)
    assert state is ChallengeState.APPROVED
    assert ran == ["read", "read", "write", "write"]
    monkeypatch.undo()

    push = await world.store.get_ceremony(sent.push_id)
    assert push is not None and push.state == "approved"
    assert push.data["answered_by"] == device.id and push.data["devices"] == [device.id]
    factor = await world.store.get_factor(device.id)
    assert factor is not None and factor.failures == 0
    stored = await world.store.get_challenge(challenge.id)
    assert stored is not None and stored.state == "approved" and stored.attempts == 2
    assert stored.grant_collected_at is None  # for the requester to collect from /status
    verified = world.audit.of("challenge_verified")
    assert verified[-1]["method"] == "push" and verified[-1]["factor_id"] == device.id
    assert "grant_id" not in verified[-1]


async def test_a_wrong_number_is_counted_and_ends_the_challenge(world: World) -> None:
    device = await world.device()
    challenge = await world.challenge()
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"))
    wrong = other_number(sent.number)

    assert await world.reason(device, sent.push_id, wrong) == "wrong_number"
    factor = await world.store.get_factor(device.id)
    assert factor is not None and factor.failures == 1
    # The back-off holds the next answer (1 s after the first failure).
    with pytest.raises(VerificationThrottled):
        await world.answer(device, sent.push_id, PushDecision.APPROVE, sent.number)
    world.clock.advance(1)
    assert await world.reason(device, sent.push_id, None) == "wrong_number"  # no number at all
    world.clock.advance(2)
    assert await world.reason(device, sent.push_id, wrong) == "wrong_number"
    # Three attempts (stepup.max_attempts): the challenge is denied and the push closed.
    stored = await world.challenges.get(challenge.id)
    assert stored is not None and stored.state is ChallengeState.DENIED
    closed = await world.store.get_ceremony(sent.push_id)
    assert closed is not None and closed.state == "expired"
    world.clock.advance(10)
    too_late = await world.closed(device, sent.push_id, number=sent.number)
    assert too_late == ("this request has expired", "expired")
    failures = world.audit.of("verification_failed")
    assert [f["reason"] for f in failures] == [
        "wrong_number",
        "throttled",
        "wrong_number",
        "wrong_number",
        "expired",
    ]
    assert failures[0] == {
        "challenge_id": challenge.id,
        "method": "push",
        "reason": "wrong_number",
        "factor_id": device.id,
        "attempts": 1,
    }
    factor = await world.store.get_factor(device.id)
    assert factor is not None and factor.failures == 3


async def test_a_right_number_clears_the_failures(world: World) -> None:
    device = await world.device()
    challenge = await world.challenge()
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"))
    assert await world.reason(device, sent.push_id, other_number(sent.number)) == "wrong_number"
    world.clock.advance(1)
    state = await world.answer(device, sent.push_id, PushDecision.APPROVE, sent.number)
    assert state is ChallengeState.APPROVED
    factor = await world.store.get_factor(device.id)
    assert factor is not None and factor.failures == 0


async def test_denying_alerts_and_raises_the_risk(world: World) -> None:
    device = await world.device()
    challenge = await world.challenge()
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"))
    state = await world.answer(device, sent.push_id, PushDecision.DENY)
    assert state is ChallengeState.DENIED
    stored = await world.challenges.get(challenge.id)
    assert stored is not None and stored.state is ChallengeState.DENIED
    assert world.audit.of("alert") == [
        {
            "kind": "push_denied",
            "challenge_id": challenge.id,
            "decision_id": challenge.decision_id,
            "push_id": sent.push_id,
            "factor_id": device.id,
        }
    ]
    assert world.audit.of("challenge_denied")[0]["reason"] == "denied"
    # Denied once: a second answer (deny or approve) is a replay.
    replayed = await world.closed(device, sent.push_id, PushDecision.DENY)
    assert replayed == ("this request was already answered", "replayed")
    assert len(world.audit.of("alert")) == 1

    def request(subject: str, carried: RiskAssessment | None = None) -> AccessRequest:
        return AccessRequest(Subject(subject), Action.READ, risk=carried)

    risk = await world.risk.assess(request("alice"), now=world.clock.now())
    assert risk.score == 35 and [s.name for s in risk.signals] == ["denied_push"]
    assert risk.signals[0].detail == "1 push approval(s) denied in the last 60 min"
    assert (await world.risk.assess(request("bob"), now=world.clock.now())).signals == ()
    carried = RiskAssessment(80, (Signal("new_device", 30),))
    combined = await world.risk.assess(request("alice", carried), now=world.clock.now())
    assert combined.score == 100 and combined.signal_names == {"new_device", "denied_push"}
    later = world.clock.now() + timedelta(hours=1, seconds=1)
    assert (await world.risk.assess(request("alice"), now=later)).signals == ()


async def test_fatigue_withholds_pushes(world: World) -> None:
    device = await world.device()
    # An approved push does not count.
    approved = await world.challenge()
    sent = await world.push.send(approved.id, caller=Caller.person("alice"))
    await world.answer(device, sent.push_id, PushDecision.APPROVE, sent.number)
    # Three ignored or denied pushes within ten minutes do.
    ignored = await world.challenge()
    await world.push.send(ignored.id, caller=Caller.person("alice"))
    world.clock.advance(301)  # expired unanswered
    retried = await world.push.send(ignored.id, caller=Caller.person("alice"))
    denied = await world.challenge()
    no = await world.push.send(denied.id, caller=Caller.person("alice"))
    await world.answer(device, no.push_id, PushDecision.DENY)
    # The open push of a challenge is still returned (nothing new is sent)...
    same = await world.push.send(ignored.id, caller=Caller.person("alice"))
    assert same.push_id == retried.push_id and not same.sent
    # ... but a new one is withheld.
    fourth = await world.challenge()
    with pytest.raises(TooManyRequests) as caught:
        await world.push.send(fourth.id, caller=Caller.person("alice"))
    assert caught.value.retry_after == 600
    assert "stronger factor" in caught.value.detail
    assert world.audit.of("push_withheld") == [
        {"challenge_id": fourth.id, "unanswered": 3, "window": 600}
    ]
    # Ten minutes after the first of them, pushes flow again.
    world.clock.advance(300)
    assert (await world.push.send(fourth.id, caller=Caller.person("alice"))).sent


async def test_pushes_only_reach_their_devices(world: World) -> None:
    phone = await world.device()
    tablet = await world.device("bob")  # (a second device of alice's would need a grant)
    challenge = await world.challenge()
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"))
    tablet_row = await world.store.get_factor(tablet.id)
    phone_row = await world.store.get_factor(phone.id)
    assert tablet_row is not None and phone_row is not None
    assert await world.push.pending(tablet_row) == []
    with pytest.raises(NotFound):
        await world.answer(tablet, sent.push_id, PushDecision.DENY)
    with pytest.raises(NotFound):
        await world.answer(phone, "psh_unknown", PushDecision.DENY)
    # Settled another way (here: a parallel approval), the push is no longer pending and is
    # not counted as ignored.
    await world.store.set_challenge_state(challenge.id, expected="pending", new="approved")
    assert await world.push.pending(phone_row) == []
    closed = await world.store.get_ceremony(sent.push_id)
    assert closed is not None and closed.state == "used"
    late = await world.closed(phone, sent.push_id, number=sent.number)
    assert late == ("this request was already answered", "replayed")


async def test_an_expired_push_cannot_be_answered(world: World) -> None:
    device = await world.device()
    challenge = await world.challenge()
    sent = await world.push.send(challenge.id, caller=Caller.person("alice"))
    world.clock.advance(300)
    expired = await world.closed(device, sent.push_id, number=sent.number)
    assert expired == ("this request has expired", "expired")
    stored = await world.challenges.get(challenge.id)
    assert stored is not None and stored.state is ChallengeState.PENDING
