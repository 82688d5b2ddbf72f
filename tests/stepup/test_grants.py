from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from piigate.crypto.keyring import Keyring
from piigate.model import Grant
from piigate.stepup import grants as grants_module
from piigate.stepup.grants import (
    GRANT_TYPE,
    GrantRejected,
    GrantRejection,
    issue_grant,
    verify_grant,
)

ISSUER = "https://piigate.example"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BINDING = "sha256:" + "ab" * 32

FULL = Grant(
    id="grt_01",
    subject_id="alice",
    level="aal2",
    amr=("otp", "mfa"),
    auth_time=T0,
    expires_at=T0 + timedelta(minutes=5),
    scope=frozenset({("ssn", "update"), ("phone", "read"), ("ssn", "read")}),
    session_id="s-1",
    device_id="d-9",
    binding=BINDING,
    challenge_id="chl_7",
)
MINIMAL = Grant(
    id="grt_02",
    subject_id="alice",
    level="aal1",
    amr=(),
    auth_time=T0,
    expires_at=T0 + timedelta(minutes=5),
)


@pytest.fixture(scope="module")
def ring() -> Keyring:
    return Keyring.ephemeral()


@pytest.fixture(scope="module")
def foreign() -> Keyring:
    return Keyring.ephemeral()


def _verify(token: str, ring: Keyring, **overrides: Any) -> Grant:
    kwargs: dict[str, Any] = {
        "keyring": ring,
        "issuer": ISSUER,
        "now": T0 + timedelta(seconds=30),
        "expected_subject": "alice",
        "expected_binding": BINDING,
    }
    kwargs.update(overrides)
    return verify_grant(token, **kwargs)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload)), signature


def _claims(grant: Grant = FULL) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "sub": grant.subject_id,
        "jti": grant.id,
        "iat": int(grant.auth_time.timestamp()),
        "auth_time": int(grant.auth_time.timestamp()),
        "exp": int(grant.expires_at.timestamp()),
        "lvl": grant.level,
        "amr": list(grant.amr),
        "scope": [list(p) for p in sorted(grant.scope)],
        "bnd": BINDING,
    }


def _signed(ring: Keyring, claims: dict[str, Any], **header: Any) -> str:
    full_header = {"alg": "ES256", "typ": GRANT_TYPE, "kid": ring.signing_kid, **header}
    return jwt.encode(full_header, claims, ring.sign_key(), algorithms=["ES256"], default_type=None)


def _rejected(reason: GrantRejection, token: str, ring: Keyring, **overrides: Any) -> None:
    with pytest.raises(GrantRejected) as info:
        _verify(token, ring, **overrides)
    assert info.value.reason is reason
    shown = f"{info.value} {info.value!r} {info.value.detail} {info.value.problem()}"
    for segment in [s for s in [token, *token.split(".")] if len(s) > 8]:
        assert segment not in shown


# -- round trip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("grant", [FULL, MINIMAL], ids=["full", "minimal"])
def test_issue_verify_round_trip(ring: Keyring, grant: Grant) -> None:
    token = issue_grant(grant, keyring=ring, issuer=ISSUER)
    assert _verify(token, ring) == grant


def test_token_layout(ring: Keyring) -> None:
    header, claims, _ = _parts(issue_grant(FULL, keyring=ring, issuer=ISSUER))
    assert header == {"alg": "ES256", "typ": "piigate-grant+jwt", "kid": ring.signing_kid}
    assert claims == {
        "iss": ISSUER,
        "sub": "alice",
        "jti": "grt_01",
        "iat": 1772366400,
        "auth_time": 1772366400,
        "exp": 1772366700,
        "lvl": "aal2",
        "amr": ["otp", "mfa"],
        "sid": "s-1",
        "dev": "d-9",
        "scope": [["phone", "read"], ["ssn", "read"], ["ssn", "update"]],
        "bnd": BINDING,
        "cid": "chl_7",
    }


def test_the_token_is_joserfcs_compact_serialisation(ring: Keyring) -> None:
    # Header and payload byte for byte as joserfc's jwt.encode writes them (a claim with
    # non-ASCII text included), and a signature (randomised: ECDSA) that joserfc verifies.
    grant = replace(FULL, subject_id="zoë", challenge_id="chl_ß")
    token = issue_grant(grant, keyring=ring, issuer=ISSUER)
    header, claims, signature = _parts(token)
    reference = jwt.encode(header, claims, ring.sign_key(), algorithms=["ES256"], default_type=None)
    assert token.split(".")[:2] == reference.split(".")[:2]
    assert len(_unb64(signature)) == 64  # R || S (RFC 7518 §3.4), not DER
    public = ring.verify_key(ring.signing_kid)
    assert public is not None
    assert jwt.decode(token, public, algorithms=["ES256"]).claims == claims
    assert _verify(token, ring, expected_subject="zoë") == grant


def test_optional_claims_are_omitted(ring: Keyring) -> None:
    _, claims, _ = _parts(issue_grant(MINIMAL, keyring=ring, issuer=ISSUER))
    assert not {"sid", "dev", "bnd", "cid"} & set(claims)
    assert claims["scope"] == []


def test_sub_second_times_are_truncated(ring: Keyring) -> None:
    grant = replace(MINIMAL, auth_time=T0 + timedelta(microseconds=900_000))
    assert _verify(issue_grant(grant, keyring=ring, issuer=ISSUER), ring).auth_time == T0


_text = st.text(min_size=1, max_size=40)


@given(
    grant=st.builds(
        Grant,
        id=_text,
        subject_id=st.just("alice"),
        level=_text,
        amr=st.lists(_text, max_size=4).map(tuple),
        auth_time=st.integers(0, 4_000_000_000).map(lambda s: datetime.fromtimestamp(s, UTC)),
        expires_at=st.just(datetime(2200, 1, 1, tzinfo=UTC)),
        scope=st.frozensets(st.tuples(_text, _text), max_size=6),
        session_id=st.none() | _text,
        device_id=st.none() | _text,
        binding=st.none() | st.just(BINDING),
        challenge_id=st.none() | _text,
    )
)
def test_round_trip_property(ring: Keyring, grant: Grant) -> None:
    token = issue_grant(grant, keyring=ring, issuer=ISSUER)
    assert _verify(token, ring, now=grant.auth_time) == grant


def test_bound_grant_without_expected_binding_is_returned_for_the_caller(ring: Keyring) -> None:
    token = issue_grant(FULL, keyring=ring, issuer=ISSUER)
    grant = _verify(token, ring, expected_binding=None)
    assert grant.single_use and grant.binding == BINDING


async def test_grant_signed_before_rotation_still_verifies() -> None:
    ring = Keyring.ephemeral()
    old_token = issue_grant(FULL, keyring=ring, issuer=ISSUER)
    old_kid = ring.signing_kid

    await ring.rotate_signing_key()
    new_token = issue_grant(FULL, keyring=ring, issuer=ISSUER)

    assert _parts(new_token)[0]["kid"] == ring.signing_kid != old_kid
    assert _verify(old_token, ring) == FULL
    assert _verify(new_token, ring) == FULL


def test_verification_never_reads_the_clock(ring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    token = issue_grant(FULL, keyring=ring, issuer=ISSUER)

    def no_clock() -> float:
        raise AssertionError("verify_grant read the wall clock")

    monkeypatch.setattr(time, "time", no_clock)
    monkeypatch.setattr(time, "time_ns", no_clock)
    # Far in the past and future relative to the real clock: only `now` matters.
    assert _verify(token, ring, now=T0) == FULL
    _rejected(GrantRejection.EXPIRED, token, ring, now=T0 + timedelta(days=1))


# -- rejections ------------------------------------------------------------------------------------


def test_expired(ring: Keyring) -> None:
    token = issue_grant(FULL, keyring=ring, issuer=ISSUER)
    assert _verify(token, ring, now=FULL.expires_at - timedelta(seconds=1)) == FULL
    _rejected(GrantRejection.EXPIRED, token, ring, now=FULL.expires_at)
    _rejected(GrantRejection.EXPIRED, token, ring, now=FULL.expires_at + timedelta(days=9))


def test_not_yet_valid_beyond_leeway(ring: Keyring) -> None:
    token = issue_grant(FULL, keyring=ring, issuer=ISSUER)
    assert _verify(token, ring, now=T0 - timedelta(seconds=60)) == FULL
    _rejected(GrantRejection.NOT_YET_VALID, token, ring, now=T0 - timedelta(seconds=61))


def test_foreign_keyring_is_unknown_key(ring: Keyring, foreign: Keyring) -> None:
    _rejected(GrantRejection.UNKNOWN_KEY, issue_grant(FULL, keyring=foreign, issuer=ISSUER), ring)


def test_foreign_key_claiming_our_kid_is_bad_signature(ring: Keyring, foreign: Keyring) -> None:
    header = {"alg": "ES256", "typ": GRANT_TYPE, "kid": ring.signing_kid}
    token = jwt.encode(header, _claims(), foreign.sign_key(), algorithms=["ES256"])
    _rejected(GrantRejection.BAD_SIGNATURE, token, ring)


def test_tampered_payload(ring: Keyring) -> None:
    header, claims, signature = issue_grant(FULL, keyring=ring, issuer=ISSUER).split(".")
    changed = {**json.loads(_unb64(claims)), "lvl": "aal3"}
    token = f"{header}.{_b64(json.dumps(changed).encode())}.{signature}"
    _rejected(GrantRejection.BAD_SIGNATURE, token, ring)


def test_tampered_header(ring: Keyring) -> None:
    header, claims, signature = issue_grant(FULL, keyring=ring, issuer=ISSUER).split(".")
    changed = {**json.loads(_unb64(header)), "typ": "JWT"}
    token = f"{_b64(json.dumps(changed).encode())}.{claims}.{signature}"
    _rejected(GrantRejection.BAD_SIGNATURE, token, ring)


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_tampered_signature(ring: Keyring, index: int) -> None:
    header, claims, signature = issue_grant(FULL, keyring=ring, issuer=ISSUER).split(".")
    raw = bytearray(_unb64(signature))
    raw[index] ^= 0x80
    _rejected(GrantRejection.BAD_SIGNATURE, f"{header}.{claims}.{_b64(bytes(raw))}", ring)


def test_stripped_signature(ring: Keyring) -> None:
    header, claims, _ = issue_grant(FULL, keyring=ring, issuer=ISSUER).split(".")
    _rejected(GrantRejection.BAD_SIGNATURE, f"{header}.{claims}.", ring)


def test_wrong_subject(ring: Keyring) -> None:
    token = issue_grant(FULL, keyring=ring, issuer=ISSUER)
    _rejected(GrantRejection.WRONG_SUBJECT, token, ring, expected_subject="mallory")
    _rejected(GrantRejection.WRONG_SUBJECT, token, ring, expected_subject="alice ")


def test_wrong_issuer(ring: Keyring) -> None:
    token = issue_grant(FULL, keyring=ring, issuer="https://other.example")
    _rejected(GrantRejection.WRONG_ISSUER, token, ring)


def test_wrong_binding(ring: Keyring) -> None:
    token = issue_grant(FULL, keyring=ring, issuer=ISSUER)
    _rejected(GrantRejection.WRONG_BINDING, token, ring, expected_binding="sha256:" + "cd" * 32)


def test_unbound_grant_ignores_expected_binding(ring: Keyring) -> None:
    token = issue_grant(MINIMAL, keyring=ring, issuer=ISSUER)
    assert _verify(token, ring, expected_binding="sha256:" + "cd" * 32) == MINIMAL


def test_wrong_type_signed_by_our_key(ring: Keyring) -> None:
    _rejected(GrantRejection.WRONG_TYPE, _signed(ring, _claims(), typ="JWT"), ring)
    _rejected(GrantRejection.WRONG_TYPE, _signed(ring, _claims(), typ="at+jwt"), ring)


def test_missing_type(ring: Keyring) -> None:
    header = {"alg": "ES256", "kid": ring.signing_kid}
    token = jwt.encode(header, _claims(), ring.sign_key(), algorithms=["ES256"], default_type=None)
    _rejected(GrantRejection.WRONG_TYPE, token, ring)


def test_alg_none_crafted_by_hand(ring: Keyring) -> None:
    header = {"alg": "none", "typ": GRANT_TYPE, "kid": ring.signing_kid}
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims()).encode())}."
    _rejected(GrantRejection.BAD_SIGNATURE, token, ring)


def test_hs256_keyed_with_our_public_key(ring: Keyring) -> None:
    # The classic algorithm-confusion attack (RFC 8725 §2.1): HMAC keyed with a public key.
    public = ring.verify_key(ring.signing_kid)
    assert public is not None
    secret = public.as_pem(private=False)
    header = {"alg": "HS256", "typ": GRANT_TYPE, "kid": ring.signing_kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims()).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    _rejected(GrantRejection.BAD_SIGNATURE, f"{signing_input}.{_b64(mac)}", ring)


def test_es256_with_an_embedded_key_is_malformed(ring: Keyring) -> None:
    attacker = ECKey.generate_key("P-256", private=True)
    header = {
        "alg": "ES256",
        "typ": GRANT_TYPE,
        "kid": ring.signing_kid,
        "jwk": dict(attacker.as_dict(private=False)),
    }
    token = jwt.encode(header, _claims(), attacker, algorithms=["ES256"], default_type=None)
    _rejected(GrantRejection.MALFORMED, token, ring)


def _header_json(value: Any) -> str:
    return _b64(json.dumps(value).encode())


GARBAGE: list[Callable[[Keyring], str]] = [
    lambda _: "",
    lambda _: "garbage",
    lambda _: "a.b",
    lambda _: "a.b.c",
    lambda _: "a.b.c.d.e",
    lambda _: "!!!.@@@.###",
    lambda _: "x" * 10_000,
    lambda _: f"{_header_json([1, 2])}.e30.",
    lambda _: f"{_header_json('ES256')}.e30.",
    lambda r: f"{_header_json({'alg': 'ES256', 'kid': 7})}.e30.",
    lambda r: f"{_header_json({'alg': 'ES256', 'typ': GRANT_TYPE})}.e30.",
    lambda r: f"{_header_json({'alg': 'ES256', 'kid': r.signing_kid, 'crit': ['b64']})}.e30.",
    lambda _: _b64(b"[" * 2000 + b"]" * 2000) + ".e30.",  # deeper than the parser's stack
    lambda _: _b64(b'{"alg": "ES256", "alg": "none"}') + ".e30.",  # a name twice
]


@pytest.mark.parametrize("make", GARBAGE, ids=[f"garbage{i}" for i in range(len(GARBAGE))])
def test_garbage_is_malformed(ring: Keyring, make: Callable[[Keyring], str]) -> None:
    _rejected(GrantRejection.MALFORMED, make(ring), ring)


def test_non_string_token_is_malformed(ring: Keyring) -> None:
    with pytest.raises(GrantRejected) as info:
        verify_grant(
            b"bytes",  # type: ignore[arg-type]
            keyring=ring,
            issuer=ISSUER,
            now=T0,
            expected_subject="alice",
        )
    assert info.value.reason is GrantRejection.MALFORMED


@pytest.mark.parametrize(
    "change",
    [
        {"exp": None},
        {"exp": "1772366700"},
        {"exp": True},
        {"iat": 1.5},
        {"sub": None},
        {"lvl": ["aal2"]},
        {"amr": "otp"},
        {"amr": [1]},
        {"scope": [["ssn"]]},
        {"scope": [["ssn", 1]]},
        {"scope": {"ssn": "read"}},
        {"sid": 5},
        {"bnd": None},
        {"exp": 10**30},
    ],
    ids=str,
)
def test_signed_but_malformed_claims(ring: Keyring, change: dict[str, Any]) -> None:
    _rejected(GrantRejection.MALFORMED, _signed(ring, {**_claims(), **change}), ring)


@pytest.mark.parametrize("missing", ["iss", "sub", "jti", "iat", "auth_time", "exp", "lvl", "amr"])
def test_signed_but_missing_claims(ring: Keyring, missing: str) -> None:
    claims = _claims()
    del claims[missing]
    _rejected(GrantRejection.MALFORMED, _signed(ring, claims), ring)


def test_payload_that_is_not_an_object(ring: Keyring) -> None:
    header = {"alg": "ES256", "typ": GRANT_TYPE, "kid": ring.signing_kid}
    token = jws.serialize_compact(header, b"[1,2,3]", ring.sign_key(), algorithms=["ES256"])
    _rejected(GrantRejection.MALFORMED, token, ring)


# -- the error and the module ----------------------------------------------------------------------


def test_rejection_is_vague_outside_exact_inside() -> None:
    error = GrantRejected(GrantRejection.WRONG_BINDING)
    assert str(error) == "grant rejected: wrong_binding"
    problem = error.problem()
    assert problem["status"] == 401 and problem["code"] == "grant_rejected"
    assert "binding" not in json.dumps(problem)
    assert error.headers()["WWW-Authenticate"].startswith("Bearer")


def test_reused_is_available_to_callers() -> None:
    assert GrantRejected(GrantRejection.REUSED).reason == "reused"


def test_naive_datetimes_are_refused(ring: Keyring) -> None:
    with pytest.raises(ValueError, match="timezone"):
        issue_grant(replace(FULL, auth_time=T0.replace(tzinfo=None)), keyring=ring, issuer=ISSUER)
    token = issue_grant(FULL, keyring=ring, issuer=ISSUER)
    with pytest.raises(ValueError, match="timezone"):
        _verify(token, ring, now=T0.replace(tzinfo=None))


def test_public_api() -> None:
    for name in grants_module.__all__:
        assert hasattr(grants_module, name), name
    assert set(GrantRejection) >= {
        GrantRejection.MALFORMED,
        GrantRejection.UNKNOWN_KEY,
        GrantRejection.BAD_SIGNATURE,
        GrantRejection.WRONG_TYPE,
        GrantRejection.WRONG_ISSUER,
        GrantRejection.EXPIRED,
        GrantRejection.NOT_YET_VALID,
        GrantRejection.WRONG_SUBJECT,
        GrantRejection.WRONG_BINDING,
        GrantRejection.REUSED,
    }
