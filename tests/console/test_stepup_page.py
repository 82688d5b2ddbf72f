"""The step-up page, ``/stepup/{challenge}``: what it shows, who may open it, a TOTP code
posted as a plain form (the grant cookie, back to ``return_to``), CSRF, and a wrong code.
SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import httpx
import pytest
from api_support import FAKE_SSN, Node, bearer
from console_support import csrf_of
from factor_support import enroll_sms, outbox_code
from push_support import Device, complete, start_enrollment, token_of
from stepup_page_support import (
    Browsers,
    browsers,
    challenge_for,
    enrol_totp,
    grant_cookie,
    post_code,
    signed_in,
    totp_now,
)

from piigate.console.csrf import CSRF_HEADER
from piigate.console.stepup import CODE_FAILED

__all__ = ["browsers"]  # the fixture, for pytest

PAYEE = "DE89 3704 0044 0532 0130 00"


@dataclass
class Alice:
    node: Node
    browser: httpx.AsyncClient  # signed in to the console as alice
    secret: str  # her TOTP secret
    key: str  # the app's API key (named "billing")


@pytest.fixture
async def alice(node: Node, browsers: Browsers) -> Alice:
    browser = browsers(node)
    await signed_in(node, browser, "alice")
    secret = await enrol_totp(node, "alice")
    _, key = await node.api_key("billing")
    return Alice(node, browser, secret, key)


def text_of(page: httpx.Response) -> str:
    """The page's visible text, whitespace collapsed (enough for these assertions)."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page.text, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


async def test_the_page_says_what_is_being_approved(alice: Alice) -> None:
    challenge_id = await challenge_for(alice.node, alice.key, "update")
    page = await alice.browser.get(f"/stepup/{challenge_id}", params={"return_to": "/done"})
    assert page.status_code == 200, page.text
    shown = text_of(page)
    assert "Change the social security number of customer 42" in shown
    assert "Action Change (update)" in shown
    assert "Personal data Social security number" in shown
    assert "Record customer 42" in shown
    assert "Asked by The app 'billing'" in shown
    assert "Expires 2026-05-04 10:" in shown
    # The one method alice has that the challenge allows, as a form that works without script.
    assert 'action="/stepup/' + challenge_id + '/verify"' in page.text
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    assert '<label for="totp-code">' in page.text
    assert 'role="status"' in page.text and 'role="alert"' in page.text
    for absent in ("method-sms", "method-push", "method-webauthn", FAKE_SSN):
        assert absent not in page.text
    # No inline script or style: one module from this origin.
    assert re.findall(r"<script[^>]*>", page.text) == [
        '<script type="module" src="/static/stepup.js">'
    ]
    assert " style=" not in page.text and " onclick=" not in page.text
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


async def test_a_transfer_shows_amount_currency_and_payee(alice: Alice) -> None:
    transaction = {"amount": "12500.00", "currency": "EUR", "payee": PAYEE}
    challenge_id = await challenge_for(
        alice.node, alice.key, "transact", pii=[], transaction=transaction
    )
    shown = text_of(await alice.browser.get(f"/stepup/{challenge_id}"))
    assert f"Pay 12500.00 EUR to {PAYEE}" in shown
    assert "Amount 12500.00 EUR" in shown and f"Payee {PAYEE}" in shown
    assert "This approval is for this one request only." in shown  # max_age: 0
    # A transfer over 10 000 takes WebAuthn or push; alice has neither.
    assert "None of your sign-in methods can approve this request." in shown
    assert "code-form" not in (await alice.browser.get(f"/stepup/{challenge_id}")).text


async def test_someone_elses_challenge_and_none_get_the_same_answer(
    alice: Alice, browsers: Browsers
) -> None:
    node = alice.node
    challenge_id = await challenge_for(node, alice.key)
    bob = browsers(node)
    await signed_in(node, bob, "bob")
    theirs = await bob.get(f"/stepup/{challenge_id}")
    unknown = await bob.get("/stepup/chl_doesnotexist")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text == unknown.text
    assert "Not found, or not yours" in theirs.text
    assert "Change the social security number" not in theirs.text
    # Bob cannot answer it either, even with a right code.
    posted = await post_code(bob, challenge_id, totp_now(node, alice.secret), csrf=csrf_of(theirs))
    assert posted.status_code == 404 and grant_cookie(posted) is None
    assert (await node.services.challenges.get(challenge_id)).attempts == 0
    # Nobody signed in (and no login ticket): sign in first, then back here.
    stranger = browsers(node)
    answer = await stranger.get(f"/stepup/{challenge_id}", params={"return_to": "/x"})
    assert answer.status_code == 303
    location = httpx.URL(answer.headers["location"])
    assert location.path == "/login"
    assert location.params["next"] == f"/stepup/{challenge_id}?return_to=%2Fx"


async def test_a_totp_code_posted_as_a_form_sets_the_grant_cookie_and_returns(
    alice: Alice,
) -> None:
    node = alice.node
    challenge_id = await challenge_for(node, alice.key)
    answer = await post_code(
        alice.browser, challenge_id, totp_now(node, alice.secret), return_to="/customers/42"
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/customers/42"
    cookie = grant_cookie(answer)
    assert cookie is not None
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=lax"} <= attributes
    assert "secure" not in attributes  # http: the default public URL
    assert "max-age=300" in attributes  # the grant's life: the rule's max_age of 5 minutes
    token = alice.browser.cookies["piigate_grant"]
    # The grant opens the request it was asked for.
    allowed = await node.decide(
        alice.key,
        {**_update(), "grants": [token]},
    )
    assert allowed.json()["outcome"] == "allow", allowed.text
    # Back on the page: approved, until when, and never the token itself.
    again = await alice.browser.get(f"/stepup/{challenge_id}")
    shown = text_of(again)
    assert "This request is approved. Your access lasts until 2026-05-04 10:05 UTC" in shown
    assert token not in again.text
    assert "code-form" not in again.text


def _update() -> dict[str, object]:
    return {
        "subject": {"id": "alice"},
        "action": "update",
        "resource": {"type": "customer", "id": "42"},
        "pii": ["ssn"],
    }


async def test_a_wrong_code_gets_one_message_and_is_counted(alice: Alice) -> None:
    node = alice.node
    challenge_id = await challenge_for(node, alice.key)
    right = totp_now(node, alice.secret)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    answer = await post_code(alice.browser, challenge_id, wrong)
    assert answer.status_code == 401
    assert grant_cookie(answer) is None
    assert text_of(answer).count(CODE_FAILED) == 1
    assert 'id="totp-code"' in answer.text and "autofocus" in answer.text
    # Counted like any refused proof: on the challenge and on the factor.
    assert (await node.services.challenges.get(challenge_id)).attempts == 1
    [factor] = await node.services.enrollment.list("alice")
    assert factor.failures == 1
    # At once again: the factor's back-off, said as such (the API's 429), the code unchecked.
    hurried = await post_code(alice.browser, challenge_id, right)
    assert hurried.status_code == 429 and grant_cookie(hurried) is None
    assert "Too many tries. Wait 1 second, then try again." in text_of(hurried)
    assert hurried.headers["retry-after"] == "1"
    # A malformed code or a recovery code alice does not have: the same one message.
    for code, method in (("not a code", "totp"), ("aaaa-bbbb-cccc", "recovery")):
        node.clock.advance(60)
        other = await post_code(alice.browser, challenge_id, code, method=method)
        assert other.status_code == 401
        assert text_of(other).count(CODE_FAILED) == 1
    # The page's script gets the same message as JSON, never a reason.
    scripted = await alice.browser.post(
        f"/stepup/{challenge_id}/verify",
        json={"method": "totp", "code": wrong},
        headers={"X-CSRF-Token": csrf_of(await alice.browser.get(f"/stepup/{challenge_id}"))},
    )
    assert scripted.status_code == 401
    assert scripted.json() == {"state": "pending", "error": CODE_FAILED}


async def test_a_form_without_its_csrf_token_is_refused(alice: Alice, browsers: Browsers) -> None:
    node = alice.node
    challenge_id = await challenge_for(node, alice.key)
    code = totp_now(node, alice.secret)
    bare = await alice.browser.post(
        f"/stepup/{challenge_id}/verify", data={"method": "totp", "code": code}
    )
    assert bare.status_code == 403 and bare.json()["code"] == "csrf_rejected"
    forged = await post_code(alice.browser, challenge_id, code, csrf="k.deadbeef")
    assert forged.status_code == 403
    # A token another browser was given is not this one's.
    other = browsers(node)
    theirs = csrf_of(await other.get("/login"))
    assert (await post_code(alice.browser, challenge_id, code, csrf=theirs)).status_code == 403
    # The script's JSON needs the header.
    scripted = await alice.browser.post(
        f"/stepup/{challenge_id}/verify", json={"method": "totp", "code": code}
    )
    assert scripted.status_code == 403
    assert (await node.services.challenges.get(challenge_id)).attempts == 0
    assert "piigate_grant" not in alice.browser.cookies
    # The right code with the page's token still works.
    assert (await post_code(alice.browser, challenge_id, code)).status_code == 303


async def test_expired_and_denied_challenges_are_shown_as_such(alice: Alice) -> None:
    node = alice.node
    challenge_id = await challenge_for(node, alice.key)
    node.clock.advance(3600)
    shown = await alice.browser.get(f"/stepup/{challenge_id}")
    assert shown.status_code == 200
    assert "This request has expired." in text_of(shown) and "code-form" not in shown.text
    late = await post_code(alice.browser, challenge_id, totp_now(node, alice.secret))
    assert late.status_code == 401 and grant_cookie(late) is None
    assert "This request has expired." in text_of(late) and CODE_FAILED not in late.text


async def test_the_status_hands_a_push_grant_to_the_cookie_once(alice: Alice) -> None:
    node = alice.node
    started = await start_enrollment(alice.browser, **{"PIIGate-Grant": await _own_grant(alice)})
    enrolled, key = await complete(node, token_of(started["enroll_uri"]))
    assert enrolled.status_code == 201, enrolled.text
    device = Device(node, enrolled.json()["device_id"], key)
    challenge_id = await challenge_for(node, alice.key)
    page = await alice.browser.get(f"/stepup/{challenge_id}")
    assert "method-push" in page.text
    csrf = {CSRF_HEADER: csrf_of(page)}
    sent = await alice.browser.post(f"/v1/challenges/{challenge_id}/push")
    assert sent.status_code == 202, sent.text
    number = sent.json()["number"]
    # The page shows the number (server-rendered too), the device never gets it.
    reloaded = await alice.browser.get(f"/stepup/{challenge_id}")
    assert f'id="push-number">{number}<' in reloaded.text
    status = f"/stepup/{challenge_id}/status"
    waiting = await alice.browser.get(status, headers=csrf)
    assert waiting.json() == {"state": "pending"} and grant_cookie(waiting) is None
    assert (await alice.browser.get(status)).status_code == 403  # no CSRF header
    [pending] = await device.pending()
    assert (await device.answer(pending["id"], "approve", number)).status_code == 200
    done = await alice.browser.get(
        status, params={"return_to": "https://evil.example/"}, headers=csrf
    )
    body = done.json()
    assert body["state"] == "approved" and body["return_to"] == "/"
    assert isinstance(body["grant_expires_at"], int) and "grant" not in body
    assert grant_cookie(done) is not None
    token = alice.browser.cookies["piigate_grant"]
    assert token not in done.text
    again = await alice.browser.get(status, headers=csrf)
    assert "grant_expires_at" not in again.json() and grant_cookie(again) is None


async def _own_grant(alice: Alice) -> str:
    """Alice's own fresh grant (adding a factor once she has one needs it)."""
    opened = await alice.browser.post("/v1/challenges", json={"purpose": "manage_factors"})
    assert opened.status_code == 201, opened.text
    verified = await alice.browser.post(
        f"/v1/challenges/{opened.json()['id']}/verify",
        json={"method": "totp", "code": totp_now(alice.node, alice.secret)},
    )
    assert verified.status_code == 200, verified.text
    alice.node.clock.advance(30)
    grant: str = verified.json()["grant"]
    return grant


async def test_an_sms_code_sent_and_answered_without_script(alice: Alice) -> None:
    node = alice.node
    grant = await _own_grant(alice)
    await enroll_sms(node, alice.browser, **{"PIIGate-Grant": grant})
    challenge_id = await challenge_for(node, alice.key)
    page = await alice.browser.get(f"/stepup/{challenge_id}")
    assert "We will text a code to +1 •••-•••-••42." in text_of(page)
    sent = await alice.browser.post(
        f"/stepup/{challenge_id}/sms", data={"csrf_token": csrf_of(page), "return_to": "/x"}
    )
    assert sent.status_code == 200, sent.text
    assert "We sent a code to +1 •••-•••-••42." in text_of(sent)
    assert "Send a new code" in sent.text
    answer = await post_code(
        alice.browser, challenge_id, await outbox_code(node), method="sms", return_to="/x"
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/x"
    assert grant_cookie(answer) is not None


async def test_an_api_key_is_no_console_session(alice: Alice) -> None:
    """The page's handlers are for the person at the browser: an API key opens nothing."""
    challenge_id = await challenge_for(alice.node, alice.key)
    anonymous = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=alice.node.app), base_url="http://t"
    )
    async with anonymous:
        answer = await anonymous.get(f"/stepup/{challenge_id}", headers=bearer(alice.key))
    assert answer.status_code == 303  # to sign in: a key is no console session
