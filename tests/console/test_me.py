"""My security: the person's factors, enrolled and removed through the page's forms (TOTP, a
phone for SMS, a push device, recovery codes), the step-up a change needs, CSRF on every form."""

from __future__ import annotations

import re
import shlex
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from api_support import Node
from factor_support import TYPED, outbox_code
from me_support import enrol_totp, grant_for, post, secret_of, signed_in, totp_now
from push_support import complete

from piigate.factors.push.protocol import parse_enroll_uri


async def test_without_a_session_the_page_sends_the_browser_to_sign_in(node: Node) -> None:
    answer = await node.client.get("/me")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fme"
    posted = await node.client.post("/me/totp", data={"csrf_token": "x"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login?next=")


async def test_a_new_person_sees_no_factors_and_what_they_may_add(node: Node) -> None:
    await signed_in(node)
    page = await node.client.get("/me")
    assert page.status_code == 200
    assert "You have no factors yet" in page.text
    for card in ("add-totp", "add-webauthn", "add-sms", "add-push", "add-recovery"):
        assert f'id="{card}"' in page.text
    assert '<script type="module" src="/static/me.js"></script>' in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_totp_enrolment_shows_the_qr_and_secret_once_then_a_code_confirms_it(
    node: Node,
) -> None:
    await signed_in(node)
    started = await post(node, "/me/totp", label="my <phone>")
    assert started.status_code == 200
    factor_id, secret = secret_of(started)
    assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"', started.text)
    assert started.headers["cache-control"] == "no-store"
    [pending] = await node.services.enrollment.list("ann")
    assert pending.id == factor_id and pending.state == "pending"

    wrong = f"{(int(totp_now(node, secret)) + 1) % 1_000_000:06d}"
    refused = await post(node, f"/me/totp/{factor_id}/confirm", code=wrong)
    assert refused.status_code == 401
    assert "That code was not accepted" in refused.text
    assert secret not in refused.text  # the secret was shown once, with the QR code

    confirmed = await post(node, f"/me/totp/{factor_id}/confirm", code=totp_now(node, secret))
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/me?done=totp"
    page = await node.client.get(confirmed.headers["location"])
    assert "Your authenticator app is set up." in page.text
    row = re.search(rf'<tr data-factor="{factor_id}".*?</tr>', page.text, re.S)
    assert row is not None
    assert "Authenticator app" in row.group(0) and "my &lt;phone&gt;" in row.group(0)
    assert "pending" not in row.group(0)
    assert secret not in page.text
    [active] = await node.services.enrollment.list("ann")
    assert active.state == "active"


async def test_factors_are_listed_with_when_they_were_last_used(node: Node) -> None:
    await signed_in(node)
    factor_id, secret = await enrol_totp(node)
    before = await node.client.get("/me")
    row = re.search(rf'<tr data-factor="{factor_id}".*?</tr>', before.text, re.S)
    assert row is not None and "not recently" in row.group(0)
    assert "2026-05-04 10:00 UTC" in row.group(0)  # enrolled
    challenge = await node.client.post("/v1/challenges", json={"purpose": "manage_factors"})
    verified = await node.client.post(
        f"/v1/challenges/{challenge.json()['id']}/verify",
        json={"method": "totp", "code": totp_now(node, secret)},
    )
    assert verified.status_code == 200
    after = await node.client.get("/me")
    row = re.search(rf'<tr data-factor="{factor_id}".*?</tr>', after.text, re.S)
    assert row is not None and "2026-05-04 10:00 UTC" in row.group(0)
    assert "not recently" not in row.group(0)


async def test_a_phone_is_enrolled_with_the_code_it_receives(node: Node) -> None:
    await signed_in(node)
    started = await post(node, "/me/sms", phone=TYPED, label="mobile")
    assert started.status_code == 200, started.text
    assert "+1 •••-•••-••42" in started.text
    # Never the number, in any way it is written (the page's random tokens may hold "650").
    for written in ("6502530042", "(650) 253", "650-253", "650 253", "253-0042", "2530042"):
        assert written not in started.text
    assert "can be intercepted" in started.text  # SMS is restricted in the example policy
    factor_id = re.search(r'action="/me/sms/(fct_[\w-]+)/confirm"', started.text)
    assert factor_id is not None
    code = await outbox_code(node)
    wrong = await post(node, f"/me/sms/{factor_id.group(1)}/confirm", code="000000")
    assert wrong.status_code == 401 and "That code was not accepted" in wrong.text
    confirmed = await post(node, f"/me/sms/{factor_id.group(1)}/confirm", code=code)
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/me?done=sms"
    page = await node.client.get("/me")
    assert "Phone (SMS codes)" in page.text and "+1 •••-•••-••42" in page.text
    [factor] = await node.services.enrollment.list("ann")
    assert factor.kind == "sms" and factor.state == "active"


async def test_an_invalid_number_is_refused_without_repeating_it(node: Node) -> None:
    await signed_in(node)
    answer = await post(node, "/me/sms", phone="+1 20255")
    assert answer.status_code == 422
    assert "20255" not in answer.text
    assert await node.services.enrollment.list("ann") == []


async def test_recovery_codes_are_shown_once(node: Node) -> None:
    await signed_in(node)
    created = await post(node, "/me/recovery")
    assert created.status_code == 200
    codes = re.findall(r"<li><code>([^<]+)</code></li>", created.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert created.headers["cache-control"] == "no-store"
    page = await node.client.get("/me")
    assert "10 of 10 codes left" in page.text
    events = await node.services.audit.list_events(subject_id="ann")
    for code in codes:
        assert code not in page.text
        assert all(code not in str(e.data) for e in events)
    # Codes are an active factor: new ones now need a step-up.
    again = await post(node, "/me/recovery")
    assert again.status_code == 303
    assert "return_to=%2Fme%3Fresume%3Drecovery" in again.headers["location"]


async def test_a_push_device_gets_its_qr_code_and_the_command_to_paste(node: Node) -> None:
    await signed_in(node)
    started = await post(node, "/me/push", label="work laptop")
    assert started.status_code == 200
    command = re.search(r'<code id="push-command">([^<]+)</code>', started.text)
    assert command is not None
    args = shlex.split(command.group(1).replace("&#39;", "'").replace("&amp;", "&"))
    assert args[:3] == ["piigate", "authenticator", "enroll"]
    assert args[4:] == ["--name", "work laptop"]
    link = parse_enroll_uri(args[3])
    assert link.url == node.settings.public_url.rstrip("/")
    assert re.search(r'<img src="data:image/svg\+xml;base64,', started.text)
    [pending] = await node.services.enrollment.list("ann")
    assert pending.kind == "push" and pending.state == "pending"
    # The device enrols with the link (as `piigate authenticator enroll` does).
    enrolled, _ = await complete(node, link.token)
    assert enrolled.status_code == 201, enrolled.text
    page = await node.client.get("/me")
    assert "Push device" in page.text and "device “pixel”" in page.text


async def test_adding_a_second_factor_goes_through_the_step_up_page_and_back(
    node: Node,
) -> None:
    await signed_in(node)
    _, secret = await enrol_totp(node)
    asked = await post(node, "/me/sms", phone=TYPED)
    location = asked.headers["location"]
    assert asked.status_code == 303 and location.startswith("/stepup/chl_")
    assert parse_qs(urlsplit(location).query)["return_to"] == ["/me?resume=sms"]
    assert len(await node.services.enrollment.list("ann")) == 1  # nothing was added
    await grant_for(node, asked, secret)
    back = await node.client.get("/me?resume=sms")
    assert 'id="resume"' in back.text and 'id="resume-sms-phone"' in back.text
    started = await post(node, "/me/sms", phone=TYPED)
    assert started.status_code == 200, started.text


async def test_removing_a_factor_needs_a_step_up_then_is_done_from_the_page(
    node: Node,
) -> None:
    await signed_in(node)
    first, secret = await enrol_totp(node, "old phone")
    asked = await post(node, "/me/totp", label="new phone")
    await grant_for(node, asked, secret)
    second, second_secret = await enrol_totp(node, "new phone")
    node.client.cookies.delete("piigate_grant")
    node.clock.advance(600)  # the grant is stale anyway

    refused = await post(node, f"/me/factors/{first}/remove")
    assert refused.status_code == 303
    location = refused.headers["location"]
    assert location.startswith("/stepup/chl_")
    assert unquote(location.split("return_to=")[1]) == f"/me?resume=remove:{first}"
    assert {f.id for f in await node.services.enrollment.list("ann")} == {first, second}

    await grant_for(node, refused, second_secret)
    back = await node.client.get(f"/me?resume=remove:{first}")
    assert "Remove your authenticator app “old phone”?" in back.text
    assert f'action="/me/factors/{first}/remove"' in back.text
    removed = await post(node, f"/me/factors/{first}/remove")
    assert removed.status_code == 303 and removed.headers["location"] == "/me?done=removed"
    assert [f.id for f in await node.services.enrollment.list("ann")] == [second]
    [event] = await node.services.audit.list_events(types=["factor_removed"])
    assert event.data["factor_id"] == first and event.data["grant_id"]


async def test_the_last_factor_cannot_be_removed(node: Node) -> None:
    await signed_in(node)
    only, secret = await enrol_totp(node)
    asked = await post(node, f"/me/factors/{only}/remove")
    await grant_for(node, asked, secret)
    refused = await post(node, f"/me/factors/{only}/remove")
    assert refused.status_code == 409
    assert "the last active factor cannot be removed" in refused.text
    assert len(await node.services.enrollment.list("ann")) == 1


async def test_a_resume_of_someone_elses_factor_offers_nothing(node: Node) -> None:
    await signed_in(node)
    page = await node.client.get("/me?resume=remove:fct_not_mine")
    assert page.status_code == 200 and 'id="resume"' not in page.text
    odd = await node.client.get("/me?resume=<script>")
    assert 'id="resume"' not in odd.text and "<script>" not in odd.text.split("</head>")[1]


async def test_a_grant_that_is_no_grant_is_dropped(node: Node) -> None:
    await signed_in(node)
    await enrol_totp(node)
    node.client.cookies.set("piigate_grant", "not-a-grant")
    answer = await post(node, "/me/recovery")
    assert answer.status_code == 401
    assert "could not be used" in answer.text
    assert 'piigate_grant=""' in answer.headers["set-cookie"]


FORMS = [
    "/me/totp",
    "/me/totp/fct_x/confirm",
    "/me/sms",
    "/me/sms/fct_x/confirm",
    "/me/push",
    "/me/recovery",
    "/me/factors/fct_x/remove",
    "/me/activity/1/report",
]


@pytest.mark.parametrize("path", FORMS)
async def test_every_form_is_refused_without_its_csrf_token(node: Node, path: str) -> None:
    await signed_in(node)
    await node.client.get("/me")
    missing = await node.client.post(path, data={"label": "x", "code": "123456"})
    assert missing.status_code == 403 and missing.json()["code"] == "csrf_rejected"
    forged = await node.client.post(path, data={"csrf_token": "k.deadbeef", "code": "123456"})
    assert forged.status_code == 403 and forged.json()["code"] == "csrf_rejected"
    assert await node.services.enrollment.list("ann") == []
    assert await node.services.audit.list_events(types=["alert"]) == []
