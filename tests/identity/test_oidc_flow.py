"""The pieces of one console sign-in at the identity provider (``identity/oidc_flow.py``): PKCE
against RFC 7636's own example, random state, nonce and verifier, the flow sealed into its
cookie and refused when forged, moved, from another deployment or too old, and the
authorization request that carries them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from piigate.crypto.keyring import Keyring
from piigate.identity.oidc_flow import (
    FLOW_LIFETIME,
    SignInFlow,
    authorization_url,
    s256_challenge,
)

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]+")


def test_s256_is_rfc_7636s_example() -> None:
    # RFC 7636 Appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_each_flow_has_its_own_random_state_nonce_and_verifier() -> None:
    flows = [SignInFlow.start("/", now=T0) for _ in range(50)]
    for flow in flows:
        assert 43 <= len(flow.verifier) <= 128 and UNRESERVED.fullmatch(flow.verifier)
        assert len(flow.state) >= 43 and len(flow.nonce) >= 43
        assert flow.code_challenge == s256_challenge(flow.verifier)
    for part in ("state", "nonce", "verifier"):
        assert len({getattr(flow, part) for flow in flows}) == 50
    assert all(flow.state != flow.nonce for flow in flows)


def test_a_flow_answers_only_its_own_state() -> None:
    flow = SignInFlow.start("/", now=T0)
    assert flow.answers(flow.state)
    assert not flow.answers(flow.state[:-1])
    assert not flow.answers(flow.nonce)
    assert not flow.answers("")
    assert not flow.answers("é" + flow.state)


async def test_a_sealed_flow_opens_as_itself_and_hides_its_secrets() -> None:
    keyring = Keyring.ephemeral()
    flow = SignInFlow.start("/security/audit?x=1", now=T0 + timedelta(microseconds=5))
    sealed = flow.seal(keyring)
    for secret in (flow.state, flow.nonce, flow.verifier, "/security/audit"):
        assert secret not in sealed
    opened = await SignInFlow.unseal(sealed, keyring, now=T0 + timedelta(minutes=9))
    assert opened == flow
    assert opened.started_at == T0  # whole seconds, as the cookie keeps it


async def test_a_forged_or_foreign_flow_does_not_open() -> None:
    keyring = Keyring.ephemeral()
    sealed = SignInFlow.start("/", now=T0).seal(keyring)
    version, kid, body = sealed.split(".")
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    for forged in (
        f"{version}.{kid}.{flipped}",
        sealed[:-2],
        "",
        "x" * 5000,
        "v1.nokey.AAAA",
        # The same keys, another purpose: a value sealed for something else is not a flow.
        keyring.encrypt(b'{"s":"a","n":"b","v":"c","r":"/","t":1778000000}', aad=b"other"),
    ):
        assert await SignInFlow.unseal(forged, keyring, now=T0) is None
    assert await SignInFlow.unseal(sealed, Keyring.ephemeral(), now=T0) is None


async def test_a_flow_is_good_for_its_lifetime_only() -> None:
    keyring = Keyring.ephemeral()
    sealed = SignInFlow.start("/", now=T0).seal(keyring)
    assert await SignInFlow.unseal(sealed, keyring, now=T0 + FLOW_LIFETIME) is not None
    late = T0 + FLOW_LIFETIME + timedelta(seconds=1)
    assert await SignInFlow.unseal(sealed, keyring, now=late) is None
    # Another node's clock a little behind still opens it; far behind does not.
    assert await SignInFlow.unseal(sealed, keyring, now=T0 - timedelta(seconds=30)) is not None
    assert await SignInFlow.unseal(sealed, keyring, now=T0 - timedelta(minutes=5)) is None


def test_the_authorization_request_carries_the_flow() -> None:
    flow = SignInFlow.start("/", now=T0)
    url = authorization_url(
        "https://idp.example/oauth2/v1/authorize?tenant=acme",
        client_id="piigate console",
        redirect_uri="https://piigate.example/login/oidc/callback",
        scopes=("openid", "profile"),
        flow=flow,
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "idp.example",
        "/oauth2/v1/authorize",
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "tenant": "acme",
        "response_type": "code",
        "client_id": "piigate console",
        "redirect_uri": "https://piigate.example/login/oidc/callback",
        "scope": "openid profile",
        "state": flow.state,
        "nonce": flow.nonce,
        "code_challenge": flow.code_challenge,
        "code_challenge_method": "S256",
    }
    assert flow.verifier not in url
