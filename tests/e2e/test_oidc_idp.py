"""The OpenID provider harness (idp_support) against piigate's own JwtValidator: a real
oidc-provider issues JWT access tokens through authorization code + PKCE with ``acr_values``,
and what it asserts (acr, auth_time, scope, audience) reaches the validator as the policy level,
the login time and the scopes. Insufficient or broken tokens show as such."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from idp_support import IdpRefused, OidcIdp

from piigate.identity import InvalidToken, JwtValidator, TokenRejection, ValidatedToken
from piigate.policy.compiled import CompiledPolicy, compile_policy
from piigate.policy.loader import load_policy
from serve_support import EXAMPLE_POLICY

pytestmark = pytest.mark.slow

AAL1, AAL2, AAL3 = "urn:piigate:aal1", "urn:piigate:aal2", "urn:piigate:aal3"


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    """The example policy: levels aal1..aal3 with acr ``urn:piigate:aalN``."""
    return compile_policy(load_policy(str(EXAMPLE_POLICY)))


@pytest.fixture
async def validator(oidc_idp: OidcIdp, policy: CompiledPolicy) -> AsyncIterator[JwtValidator]:
    jwt = JwtValidator(
        oidc_idp.issuer,
        oidc_idp.audience,
        oidc_idp.jwks_url,
        level_resolver=policy.level_for_acr,
    )
    yield jwt
    await jwt.aclose()


def _now() -> datetime:
    return datetime.now(UTC)


async def _validated(
    idp: OidcIdp, validator: JwtValidator, **flow: Any
) -> tuple[ValidatedToken, float, float]:
    """A token from the provider, validated; with the wall clock before and after the flow."""
    before = time.time()
    token = idp.token(**flow)
    after = time.time()
    return await validator.validate(token, now=_now()), before, after


def _within(moment: datetime | None, start: float, end: float) -> bool:
    """``moment`` (whole seconds, as in a JWT) lies in [start, end]."""
    assert moment is not None
    return int(start) <= moment.timestamp() <= end


async def test_a_token_carries_the_requested_acr_as_the_policy_level_and_a_fresh_login(
    oidc_idp: OidcIdp, validator: JwtValidator
) -> None:
    checked, before, after = await _validated(
        oidc_idp, validator, subject="alice", acr=AAL2, max_age=300
    )
    assert checked.subject.id == "alice"
    assert checked.session.acr == AAL2
    assert checked.session.level == "aal2"
    assert "otp" in checked.session.amr
    assert _within(checked.session.auth_time, before, after)
    assert checked.subject.scopes == {"customers:read", "customers:write"}
    assert checked.claims["aud"] == oidc_idp.audience
    assert checked.claims["iss"] == oidc_idp.issuer
    assert checked.expires_at > _now()


async def test_a_user_who_proves_less_than_asked_gets_the_lower_level(
    oidc_idp: OidcIdp, validator: JwtValidator, policy: CompiledPolicy
) -> None:
    checked, _, _ = await _validated(
        oidc_idp, validator, subject="bob", acr=AAL1, acr_values=AAL2, max_age=300
    )
    assert checked.session.acr == AAL1
    assert checked.session.level == "aal1"
    assert policy.ranks["aal1"] < policy.ranks["aal2"]


async def test_each_acr_maps_to_its_level(oidc_idp: OidcIdp, validator: JwtValidator) -> None:
    for acr, level in ((AAL1, "aal1"), (AAL2, "aal2"), (AAL3, "aal3")):
        checked, _, _ = await _validated(oidc_idp, validator, subject="carol", acr=acr)
        assert checked.session.level == level


async def test_an_old_login_gives_an_old_auth_time_even_when_max_age_is_asked(
    oidc_idp: OidcIdp, validator: JwtValidator
) -> None:
    # The provider takes the login's time from the interaction's answer: it does not enforce
    # max_age itself, so the resource server must (RFC 9470 §4).
    checked, before, after = await _validated(
        oidc_idp, validator, subject="alice", acr=AAL2, auth_age=3600, max_age=300
    )
    assert checked.session.level == "aal2"
    assert _within(checked.session.auth_time, before - 3600, after - 3600)


async def test_a_narrower_scope_is_what_the_token_carries(
    oidc_idp: OidcIdp, validator: JwtValidator
) -> None:
    checked, _, _ = await _validated(
        oidc_idp, validator, subject="alice", acr=AAL2, scope="customers:read"
    )
    assert checked.subject.scopes == {"customers:read"}


async def test_an_expired_token_is_refused(oidc_idp: OidcIdp, validator: JwtValidator) -> None:
    token = oidc_idp.token(subject="alice", acr=AAL2)
    checked = await validator.validate(token, now=_now())
    later = checked.expires_at + timedelta(seconds=validator.leeway + 1)
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token, now=later)
    assert info.value.reason is TokenRejection.EXPIRED


async def test_a_token_whose_acr_was_raised_afterwards_is_refused(
    oidc_idp: OidcIdp, validator: JwtValidator
) -> None:
    header, payload, signature = oidc_idp.token(subject="bob", acr=AAL1).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["acr"] = AAL3
    raised = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken) as info:
        await validator.validate(f"{header}.{raised}.{signature}", now=_now())
    assert info.value.reason is TokenRejection.SIGNATURE


async def test_a_token_for_another_audience_is_refused(
    oidc_idp: OidcIdp, policy: CompiledPolicy
) -> None:
    other = JwtValidator(oidc_idp.issuer, "billing-api", oidc_idp.jwks_url)
    try:
        with pytest.raises(InvalidToken) as info:
            await other.validate(oidc_idp.token(subject="alice", acr=AAL2), now=_now())
        assert info.value.reason is TokenRejection.AUDIENCE
    finally:
        await other.aclose()


def test_the_provider_refuses_an_acr_it_does_not_offer(oidc_idp: OidcIdp) -> None:
    with pytest.raises(IdpRefused) as info:
        oidc_idp.token(subject="alice", acr="urn:example:gold")
    assert info.value.error == "invalid_request"
