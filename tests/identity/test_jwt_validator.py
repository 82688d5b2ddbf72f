"""JwtValidator against a real JWKS server on loopback that counts its hits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from piigate.identity import IdpUnavailable, InvalidToken, JwtValidator, TokenRejection
from piigate.identity.jwks import JwksError, parse_jwks

ISSUER = "https://idp.test"
AUDIENCE = "customers-api"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEVELS = {
    "urn:piigate:aal1": "aal1",
    "urn:piigate:aal2": "aal2",
    "2": "aal2",
    "urn:okta:loa:2fa:any": "aal2",
    "urn:piigate:aal3": "aal3",
}


def resolve_level(acr: str | None) -> str | None:
    return LEVELS.get(acr) if acr is not None else None


class JwksServer:
    """Serves ``keys`` as a JWK Set at /jwks; counts hits; can be slowed down or stopped."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.hits = 0
        self.delay = 0.0
        self.status = 200
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                    body = json.dumps(KeySet(list(server.keys)).as_dict(private=False)).encode()
                    delay, status = server.delay, server.status
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join()


class FakeTimer:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def rsa_key2() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


@pytest.fixture(scope="module")
def ed_key() -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})


@pytest.fixture
def idp(rsa_key: RSAKey, ec_key: ECKey, ed_key: OKPKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [rsa_key, ec_key, ed_key]
    yield server
    server.stop()


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        yield client


@pytest.fixture
def validator(idp: JwksServer, http: httpx.AsyncClient, timer: FakeTimer) -> JwtValidator:
    return make_validator(idp.url, http, timer)


def make_validator(
    url: str, http: httpx.AsyncClient | None, timer: FakeTimer, *, verified_ttl: float = 0
) -> JwtValidator:
    """Without the cache of verified tokens unless asked: these tests check every token."""
    return JwtValidator(
        ISSUER,
        AUDIENCE,
        url,
        http=http,
        level_resolver=resolve_level,
        timer=timer,
        verified_ttl=verified_ttl,
    )


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": int(NOW.timestamp()) - 30,
        "exp": int(NOW.timestamp()) + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Key, alg: str, payload: dict[str, Any], *, kid: str | None = "default") -> str:
    header: dict[str, Any] = {"alg": alg}
    if kid == "default":
        header["kid"] = key.kid
    elif kid is not None:
        header["kid"] = kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, payload, key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def rejected(validator: JwtValidator, token: str) -> TokenRejection:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token, now=NOW)
    return info.value.reason


# --- the happy path ------------------------------------------------------------------------


async def test_valid_token_gives_subject_and_session(
    validator: JwtValidator, rsa_key: RSAKey
) -> None:
    auth_time = int(NOW.timestamp()) - 120
    token = sign(
        rsa_key,
        "RS256",
        claims(
            roles=["support", "admin"],
            scope="openid customers:read",
            scp=["decisions"],
            sid="s-1",
            acr="urn:piigate:aal2",
            amr=["pwd", "otp"],
            auth_time=auth_time,
            jti="t-9",
        ),
    )
    result = await validator.validate(token, now=NOW)

    assert result.subject.id == "alice"
    assert result.subject.roles == {"support", "admin"}
    assert result.subject.scopes == {"openid", "customers:read", "decisions"}
    assert result.session.id == "s-1"
    assert result.session.acr == "urn:piigate:aal2"
    assert result.session.level == "aal2"
    assert result.session.amr == ("pwd", "otp")
    assert result.session.auth_time == datetime.fromtimestamp(auth_time, tz=UTC)
    assert result.expires_at == NOW + timedelta(seconds=300)
    assert result.token_id == "t-9"
    assert result.claims["sub"] == "alice"


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(("fixture", "alg"), [("ec_key", "ES256"), ("ed_key", "EdDSA")])
async def test_ec_and_eddsa_tokens_validate_without_warnings(
    validator: JwtValidator, request: pytest.FixtureRequest, fixture: str, alg: str
) -> None:
    key = request.getfixturevalue(fixture)
    result = await validator.validate(sign(key, alg, claims()), now=NOW)
    assert result.subject.id == "alice"


async def test_ps256_is_allowed(validator: JwtValidator, rsa_key: RSAKey) -> None:
    result = await validator.validate(sign(rsa_key, "PS256", claims()), now=NOW)
    assert result.subject.id == "alice"


async def test_auth_time_falls_back_to_iat(validator: JwtValidator, rsa_key: RSAKey) -> None:
    result = await validator.validate(sign(rsa_key, "RS256", claims()), now=NOW)
    assert result.session.auth_time == NOW - timedelta(seconds=30)
    assert result.session.acr is None
    assert result.session.level is None
    assert result.session.amr == ()


@pytest.mark.parametrize(
    ("acr", "level"),
    [("urn:okta:loa:2fa:any", "aal2"), ("2", "aal2"), ("urn:piigate:aal3", "aal3"), ("x", None)],
)
async def test_acr_aliases_resolve_to_levels(
    validator: JwtValidator, ec_key: ECKey, acr: str, level: str | None
) -> None:
    result = await validator.validate(sign(ec_key, "ES256", claims(acr=acr)), now=NOW)
    assert result.session.level == level


async def test_audience_list_containing_ours_is_accepted(
    validator: JwtValidator, ec_key: ECKey
) -> None:
    token = sign(ec_key, "ES256", claims(aud=["other", AUDIENCE]))
    assert (await validator.validate(token, now=NOW)).subject.id == "alice"


async def test_nested_roles_claim(idp: JwksServer, http: httpx.AsyncClient, ec_key: ECKey) -> None:
    validator = JwtValidator(ISSUER, AUDIENCE, idp.url, http=http, roles_claim="realm_access.roles")
    token = sign(ec_key, "ES256", claims(realm_access={"roles": ["support"]}))
    assert (await validator.validate(token, now=NOW)).subject.roles == {"support"}


# --- claim checks --------------------------------------------------------------------------


async def test_expired_token(validator: JwtValidator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, "RS256", claims(exp=int(NOW.timestamp()) - 61))
    assert await rejected(validator, token) is TokenRejection.EXPIRED


async def test_expiry_within_leeway_is_accepted(validator: JwtValidator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, "RS256", claims(exp=int(NOW.timestamp()) - 30))
    assert (await validator.validate(token, now=NOW)).subject.id == "alice"


async def test_not_yet_valid(validator: JwtValidator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, "RS256", claims(nbf=int(NOW.timestamp()) + 120))
    assert await rejected(validator, token) is TokenRejection.NOT_YET_VALID


async def test_wrong_issuer(validator: JwtValidator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, "RS256", claims(iss="https://idp.test/"))
    assert await rejected(validator, token) is TokenRejection.ISSUER


async def test_wrong_audience(validator: JwtValidator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, "RS256", claims(aud=["other-api"]))
    assert await rejected(validator, token) is TokenRejection.AUDIENCE


@pytest.mark.parametrize("missing", ["exp", "sub", "iss", "aud"])
async def test_required_claims(validator: JwtValidator, rsa_key: RSAKey, missing: str) -> None:
    token = sign(rsa_key, "RS256", claims(**{missing: None}))
    assert await rejected(validator, token) in {
        TokenRejection.CLAIMS,
        TokenRejection.ISSUER,
        TokenRejection.AUDIENCE,
    }


@pytest.mark.parametrize(
    "bad",
    [{"roles": ["a", "b", 3]}, {"amr": "pwd"}, {"acr": 2}, {"scp": {"a": 1}}],
)
async def test_malformed_authorization_claims_are_refused(
    validator: JwtValidator, rsa_key: RSAKey, bad: dict[str, Any]
) -> None:
    token = sign(rsa_key, "RS256", claims(**bad))
    assert await rejected(validator, token) is TokenRejection.CLAIMS


async def test_auth_time_in_the_future_is_refused(validator: JwtValidator, ec_key: ECKey) -> None:
    token = sign(ec_key, "ES256", claims(auth_time=int(NOW.timestamp()) + 3600))
    assert await rejected(validator, token) is TokenRejection.CLAIMS


# --- signatures and algorithms --------------------------------------------------------------


async def test_bad_signature(validator: JwtValidator) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    token = sign(impostor, "RS256", claims())
    assert await rejected(validator, token) is TokenRejection.SIGNATURE


async def test_tampered_payload(validator: JwtValidator, rsa_key: RSAKey) -> None:
    header, _, signature = sign(rsa_key, "RS256", claims()).split(".")
    forged = b64(json.dumps(claims(sub="mallory")).encode())
    assert await rejected(validator, f"{header}.{forged}.{signature}") is TokenRejection.SIGNATURE


async def test_alg_none_is_refused(validator: JwtValidator, idp: JwksServer) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    assert await rejected(validator, token) is TokenRejection.ALGORITHM
    assert idp.hits == 0  # refused before any key lookup


async def test_hs256_signed_with_the_public_key_is_refused(
    validator: JwtValidator, rsa_key: RSAKey
) -> None:
    public_pem = rsa_key.as_pem(private=False)
    header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64(mac)}"
    assert await rejected(validator, token) is TokenRejection.ALGORITHM


async def test_algorithm_not_in_allowlist(validator: JwtValidator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, "RS512", claims())
    assert await rejected(validator, token) is TokenRejection.ALGORITHM


async def test_key_of_the_wrong_type_for_the_alg(validator: JwtValidator, ec_key: ECKey) -> None:
    # An ES256 header naming the RSA key's kid: no key can check it.
    token = sign(ec_key, "ES256", claims(), kid="rsa-1")
    assert await rejected(validator, token) is TokenRejection.UNKNOWN_KEY


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "RSA1_5"])
def test_symmetric_or_none_algorithms_cannot_be_configured(alg: str) -> None:
    with pytest.raises(ValueError, match="public-key"):
        JwtValidator(ISSUER, AUDIENCE, "https://idp.test/jwks", algorithms=("RS256", alg))


def test_plain_http_jwks_url_only_on_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        JwtValidator(ISSUER, AUDIENCE, "http://idp.example/jwks")
    JwtValidator(ISSUER, AUDIENCE, "http://localhost:9/jwks")
    JwtValidator(ISSUER, AUDIENCE, "http://[::1]:9/jwks")


async def test_kid_is_required_when_the_set_has_several_keys(
    validator: JwtValidator, rsa_key: RSAKey
) -> None:
    token = sign(rsa_key, "RS256", claims(), kid=None)
    assert await rejected(validator, token) is TokenRejection.KEY_ID_REQUIRED


async def test_kid_is_optional_when_the_set_has_one_key(
    idp: JwksServer, http: httpx.AsyncClient, timer: FakeTimer, ec_key: ECKey
) -> None:
    idp.keys = [ec_key]
    validator = make_validator(idp.url, http, timer)
    token = sign(ec_key, "ES256", claims(), kid=None)
    assert (await validator.validate(token, now=NOW)).subject.id == "alice"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c",
        "a.b.c.d.e",
        f"{b64(b'[1]')}.{b64(b'{}')}.",
        f"{b64(json.dumps({'alg': 'RS256', 'b64': False, 'crit': ['b64']}).encode())}.x.y",
        "x" * 20000,
    ],
)
async def test_malformed_tokens(validator: JwtValidator, token: str) -> None:
    assert await rejected(validator, token) in {TokenRejection.MALFORMED, TokenRejection.ALGORITHM}


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
async def test_arbitrary_text_only_ever_gives_invalid_token(
    validator: JwtValidator, text: str
) -> None:
    with pytest.raises(InvalidToken):
        await validator.validate(text, now=NOW)


async def test_errors_are_vague_and_never_echo_the_token(
    validator: JwtValidator, rsa_key: RSAKey
) -> None:
    token = sign(rsa_key, "RS256", claims(exp=int(NOW.timestamp()) - 3600))
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token, now=NOW)
    error = info.value
    rendered = json.dumps(error.problem()) + str(error) + repr(error) + str(error.headers())
    assert token not in rendered
    assert token.split(".")[1] not in rendered
    assert "expired" not in rendered.lower()
    assert error.status == 401
    assert error.problem()["code"] == "invalid_token"
    assert 'error="invalid_token"' in error.headers()["WWW-Authenticate"]


# --- the key set: caching, rotation, rate limits, outages -----------------------------------


async def test_keys_are_cached_for_cache_ttl(
    validator: JwtValidator, idp: JwksServer, timer: FakeTimer, rsa_key: RSAKey
) -> None:
    token = sign(rsa_key, "RS256", claims())
    for _ in range(5):
        await validator.validate(token, now=NOW)
    assert idp.hits == 1
    timer.advance(599)
    await validator.validate(token, now=NOW)
    assert idp.hits == 1
    timer.advance(2)
    await validator.validate(token, now=NOW)
    assert idp.hits == 2


async def test_unknown_kid_triggers_one_refresh_and_rotation_works(
    validator: JwtValidator, idp: JwksServer, timer: FakeTimer, rsa_key: RSAKey, rsa_key2: RSAKey
) -> None:
    await validator.validate(sign(rsa_key, "RS256", claims()), now=NOW)
    assert idp.hits == 1

    idp.keys = [rsa_key2]  # the IdP rotates: a new key, the old one gone
    timer.advance(31)  # min_refresh_interval counts every fetch, the first one too
    result = await validator.validate(sign(rsa_key2, "RS256", claims(sub="bob")), now=NOW)
    assert result.subject.id == "bob"
    assert idp.hits == 2

    assert await rejected(validator, sign(rsa_key, "RS256", claims())) in {
        TokenRejection.UNKNOWN_KEY
    }
    assert idp.hits == 2  # rotated away, and within min_refresh_interval: no refetch


async def test_unknown_kids_do_not_refetch_within_min_refresh_interval(
    validator: JwtValidator, idp: JwksServer, timer: FakeTimer, rsa_key: RSAKey
) -> None:
    await validator.validate(sign(rsa_key, "RS256", claims()), now=NOW)
    timer.advance(31)
    for i in range(10):
        token = sign(rsa_key, "RS256", claims(), kid=f"made-up-{i}")
        assert await rejected(validator, token) is TokenRejection.UNKNOWN_KEY
    assert idp.hits == 2  # the first made-up kid refreshed once; the other nine did not

    timer.advance(31)
    token = sign(rsa_key, "RS256", claims(), kid="made-up-again")
    assert await rejected(validator, token) is TokenRejection.UNKNOWN_KEY
    assert idp.hits == 3


async def test_concurrent_unknown_kid_validations_share_one_fetch(
    validator: JwtValidator, idp: JwksServer, timer: FakeTimer, rsa_key: RSAKey, rsa_key2: RSAKey
) -> None:
    await validator.validate(sign(rsa_key, "RS256", claims()), now=NOW)
    assert idp.hits == 1
    timer.advance(31)
    idp.keys = [rsa_key, rsa_key2]
    idp.delay = 0.2
    token = sign(rsa_key2, "RS256", claims(sub="bob"))
    results = await asyncio.gather(*(validator.validate(token, now=NOW) for _ in range(20)))
    assert {r.subject.id for r in results} == {"bob"}
    assert idp.hits == 2


async def test_concurrent_cold_start_fetches_once(
    validator: JwtValidator, idp: JwksServer, ec_key: ECKey
) -> None:
    idp.delay = 0.2
    token = sign(ec_key, "ES256", claims())
    await asyncio.gather(*(validator.validate(token, now=NOW) for _ in range(20)))
    assert idp.hits == 1


async def test_cached_keys_survive_an_idp_outage(
    validator: JwtValidator, idp: JwksServer, timer: FakeTimer, rsa_key: RSAKey
) -> None:
    token = sign(rsa_key, "RS256", claims())
    await validator.validate(token, now=NOW)
    idp.stop()
    timer.advance(3600)  # far past cache_ttl: a refresh is due and fails

    assert (await validator.validate(token, now=NOW)).subject.id == "alice"
    with pytest.raises(IdpUnavailable) as info:
        await validator.validate(sign(rsa_key, "RS256", claims(), kid="new-key"), now=NOW)
    assert info.value.status == 503
    assert validator.jwks.fetch_count == 2  # the outage is probed once per interval, not per call


async def test_idp_unavailable_when_nothing_is_cached(
    http: httpx.AsyncClient, timer: FakeTimer, rsa_key: RSAKey
) -> None:
    server = JwksServer()
    server.stop()
    validator = make_validator(server.url, http, timer)
    with pytest.raises(IdpUnavailable):
        await validator.validate(sign(rsa_key, "RS256", claims()), now=NOW)


async def test_idp_error_status_counts_as_unavailable(
    validator: JwtValidator, idp: JwksServer, timer: FakeTimer, rsa_key: RSAKey
) -> None:
    idp.status = 500
    token = sign(rsa_key, "RS256", claims())
    with pytest.raises(IdpUnavailable):
        await validator.validate(token, now=NOW)
    with pytest.raises(IdpUnavailable):
        await validator.validate(token, now=NOW)
    assert idp.hits == 1  # no retry within min_refresh_interval
    idp.status = 200
    timer.advance(31)
    assert (await validator.validate(token, now=NOW)).subject.id == "alice"
    assert idp.hits == 2


async def test_own_http_client(idp: JwksServer, timer: FakeTimer, ec_key: ECKey) -> None:
    validator = make_validator(idp.url, None, timer)
    try:
        result = await validator.validate(sign(ec_key, "ES256", claims()), now=NOW)
        assert result.subject.id == "alice"
    finally:
        await validator.aclose()


# --- parsing key sets ------------------------------------------------------------------------


def test_parse_jwks_skips_symmetric_encryption_and_broken_keys(rsa_key: RSAKey) -> None:
    good = rsa_key.as_dict(private=True)  # private members must be dropped
    keyset = parse_jwks(
        {
            "keys": [
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                {**rsa_key.as_dict(private=False), "kid": "enc", "use": "enc"},
                {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
                "not a key",
                good,
            ]
        }
    )
    assert [k.kid for k in keyset.keys] == ["rsa-1"]
    assert not keyset.keys[0].is_private


@pytest.mark.parametrize("doc", [b"not json", b"[]", b'{"keys": {}}', b'{"keys": []}'])
def test_parse_jwks_refuses_useless_documents(doc: bytes) -> None:
    with pytest.raises(JwksError):
        parse_jwks(doc)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
CLAIM_NAMES = ("iss", "aud", "sub", "exp", "nbf", "iat", "auth_time", "acr", "amr", "sid")
_claim_names = st.sampled_from((*CLAIM_NAMES, "scope", "scp", "roles", "jti"))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.dictionaries(_claim_names, _json, max_size=4))
async def test_signed_garbage_claims_give_a_result_or_invalid_token(
    validator: JwtValidator, ec_key: ECKey, overrides: dict[str, Any]
) -> None:
    payload = {**claims(), **overrides}
    try:
        token = sign(ec_key, "ES256", payload)
    except (TypeError, ValueError, OverflowError):
        return  # not encodable as a JWT in the first place
    try:
        result = await validator.validate(token, now=NOW)
    except InvalidToken:
        return
    assert result.subject.id == payload["sub"]


_header_names = st.sampled_from(("kid", "crit", "b64", "typ", "cty", "jku", "jwk", "x5c", "zip"))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    alg=st.sampled_from(("RS256", "ES256", "EdDSA", "HS256", "none", "RS512", "")) | _json,
    extra=st.dictionaries(_header_names, _json | st.just("rsa-1"), max_size=3),
)
async def test_hostile_headers_only_ever_give_invalid_token(
    validator: JwtValidator, idp: JwksServer, alg: Any, extra: dict[str, Any]
) -> None:
    header = b64(json.dumps({"alg": alg, **extra}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}.{b64(b'x' * 64)}"
    with pytest.raises(InvalidToken):
        await validator.validate(token, now=NOW)
    assert idp.hits <= 2


async def test_large_header_with_certificate_chain_is_accepted(
    validator: JwtValidator, rsa_key: RSAKey
) -> None:
    header = {"alg": "RS256", "kid": "rsa-1", "x5c": ["A" * 1500, "B" * 1500]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        token = jwt.encode(header, claims(), rsa_key, algorithms=["RS256"])
    assert (await validator.validate(token, now=NOW)).subject.id == "alice"


# --- verified tokens: checked once, then remembered briefly -----------------------------------


async def test_a_verified_token_is_remembered_until_its_ttl_and_never_past_its_expiry(
    idp: JwksServer,
    http: httpx.AsyncClient,
    timer: FakeTimer,
    rsa_key: RSAKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cached = make_validator(idp.url, http, timer, verified_ttl=30)
    checks: list[object] = []
    verify = cached._verify_signature
    monkeypatch.setattr(cached, "_verify_signature", lambda *a: checks.append(a) or verify(*a))
    token = sign(rsa_key, "RS256", claims())
    first = await cached.validate(token, now=NOW)
    again = await cached.validate(token, now=NOW)
    assert again.subject == first.subject and again.session == first.session
    assert len(checks) == 1  # verified once
    late = datetime.fromtimestamp(claims()["exp"] + 61, tz=UTC)
    with pytest.raises(InvalidToken) as expired:
        await cached.validate(token, now=late)
    assert expired.value.reason is TokenRejection.EXPIRED
    timer.advance(31)
    await cached.validate(token, now=NOW)
    assert len(checks) == 2  # verified again after 30 s


async def test_a_remembered_token_s_level_is_read_by_the_policy_in_force(
    idp: JwksServer, http: httpx.AsyncClient, timer: FakeTimer, rsa_key: RSAKey
) -> None:
    levels = {"urn:piigate:aal2": "aal2"}
    cached = JwtValidator(
        ISSUER, AUDIENCE, idp.url, http=http, timer=timer, level_resolver=levels.get
    )
    token = sign(rsa_key, "RS256", claims(acr="urn:piigate:aal2"))
    assert (await cached.validate(token, now=NOW)).session.level == "aal2"
    levels.clear()  # a policy reload that no longer knows the acr
    assert (await cached.validate(token, now=NOW)).session.level is None
