"""The webhook and Twilio adapters against a real HTTP server on loopback that records calls."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
from sms_support import RecordingServer, recording_server

from piigate.crypto.secret import Secret
from piigate.factors.sms import SmsDeliveryError, SmsMessage, parse_phone
from piigate.factors.sms.twilio import TwilioSender
from piigate.factors.sms.webhook import (
    SIGNATURE_HEADER,
    WebhookSender,
    sign_payload,
    verify_signature,
)

NUMBER = "+16502530042"
CODE = "314159"
TEXT = f"piigate: {CODE} is your code to approve changing ssn. Never share it."
HOOK_SECRET = Secret("webhook-secret-0123456789abcdef")
SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = Secret("auth-token-value-xyz")


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    yield from recording_server()


def message() -> SmsMessage:
    return SmsMessage("cer_test1", parse_phone(NUMBER), Secret(TEXT))


# -- webhook ------------------------------------------------------------------------------------


async def test_webhook_posts_signed_json(server: RecordingServer) -> None:
    sender = WebhookSender(f"{server.url}/sms/send", HOOK_SECRET, timeout=2)
    try:
        await sender.send(message())
    finally:
        await sender.aclose()
    [call] = server.requests
    assert call.path == "/sms/send" and call.headers["content-type"] == "application/json"
    assert json.loads(call.body) == {"id": "cer_test1", "to": NUMBER, "text": TEXT}
    header = call.headers[SIGNATURE_HEADER.lower()]
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert abs(stamp - time.time()) < 60
    assert verify_signature(HOOK_SECRET, call.body, header, now=int(time.time()))
    # Any change to the body, the key or the time breaks it.
    assert not verify_signature(HOOK_SECRET, call.body + b" ", header, now=int(time.time()))
    assert not verify_signature(Secret("another-secret-0123456789"), call.body, header, now=stamp)
    assert not verify_signature(HOOK_SECRET, call.body, header, now=stamp + 301)
    assert verify_signature(HOOK_SECRET, call.body, header, now=stamp + 300)


def test_signature_format_and_malformed_headers() -> None:
    body = b'{"id":"x"}'
    header = sign_payload(HOOK_SECRET, body, timestamp=1700000000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    for bad in ("", "v1=abc", "t=abc,v1=00", "t=1700000000", "t=1,t=1700000000," + header[13:]):
        assert not verify_signature(HOOK_SECRET, body, bad, now=1700000000)


@pytest.mark.parametrize("status", [400, 500, 503])
async def test_webhook_non_2xx_is_a_delivery_error(server: RecordingServer, status: int) -> None:
    server.status = status
    server.reply = json.dumps({"error": f"cannot send to {NUMBER}"}).encode()
    sender = WebhookSender(server.url, HOOK_SECRET, timeout=2)
    try:
        with pytest.raises(SmsDeliveryError) as caught:
            await sender.send(message())
    finally:
        await sender.aclose()
    assert caught.value.reason == f"http_{status}" and caught.value.provider == "webhook"
    assert NUMBER not in str(caught.value)


async def test_webhook_timeout_and_refused_connection(server: RecordingServer) -> None:
    server.delay = 1.0
    sender = WebhookSender(server.url, HOOK_SECRET, timeout=0.2)
    try:
        with pytest.raises(SmsDeliveryError) as caught:
            await sender.send(message())
        assert caught.value.reason == "timeout"
    finally:
        await sender.aclose()
    closed = WebhookSender("http://127.0.0.1:9/sms", HOOK_SECRET, timeout=1)
    try:
        with pytest.raises(SmsDeliveryError) as refused:
            await closed.send(message())
        assert refused.value.reason == "network"
    finally:
        await closed.aclose()


# -- Twilio -------------------------------------------------------------------------------------


def twilio(server: RecordingServer, **kw: str) -> TwilioSender:
    options = {"from_number": "+15005550006", **kw}
    return TwilioSender(
        account_sid=SID, auth_token=TOKEN, base_url=server.url + "/", timeout=2, **options
    )


async def test_twilio_posts_the_messages_form_with_basic_auth(server: RecordingServer) -> None:
    server.status, server.reply = 201, b'{"sid": "SM123", "status": "queued"}'
    sender = twilio(server)
    try:
        await sender.send(message())
    finally:
        await sender.aclose()
    [call] = server.requests
    assert call.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(call.body.decode(), strict_parsing=True)
    assert form == {"To": [NUMBER], "From": ["+15005550006"], "Body": [TEXT]}
    scheme, _, credentials = call.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{SID}:{TOKEN.reveal()}"


async def test_twilio_with_a_messaging_service(server: RecordingServer) -> None:
    server.status = 201
    sender = twilio(server, messaging_service_sid="MG0123")
    try:
        await sender.send(message())
    finally:
        await sender.aclose()
    form = parse_qs(server.requests[0].body.decode())
    assert form["MessagingServiceSid"] == ["MG0123"] and "From" not in form


async def test_twilio_errors_keep_only_status_and_code(server: RecordingServer) -> None:
    server.status = 400
    server.reply = json.dumps(
        {"code": 21211, "message": f"The 'To' number {NUMBER} is not a valid phone number."}
    ).encode()
    sender = twilio(server)
    try:
        with pytest.raises(SmsDeliveryError) as caught:
            await sender.send(message())
    finally:
        await sender.aclose()
    assert caught.value.reason == "http_400_twilio_21211"
    assert NUMBER not in str(caught.value) and CODE not in str(caught.value)


def test_twilio_needs_a_sender() -> None:
    with pytest.raises(ValueError, match="From number or a MessagingServiceSid"):
        TwilioSender(account_sid=SID, auth_token=TOKEN)


def test_adapters_do_not_show_their_secrets() -> None:
    sender = WebhookSender("https://sms.example/send", HOOK_SECRET)
    assert HOOK_SECRET.reveal() not in repr(vars(sender))
    assert repr(message()).count(CODE) == 0 and NUMBER not in repr(message())
