"""The reference authenticator against httpx's MockTransport: what it signs, how it reads the
server's answers, and what a push shows. The end-to-end runs are in test_authenticator.py."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from piigate.factors.push.protocol import (
    DEVICE_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeviceAlgorithm,
    canonical_request,
    enroll_uri,
    parse_public_key,
    verify_signature,
)
from piigate_authenticator import (
    Authenticator,
    AuthenticatorError,
    DeviceApi,
    KeyFile,
    describe_push,
    is_push_id,
)

NOW = 1_780_000_000.0
SERVER = "https://piigate.example"


def _verify(request: httpx.Request, jwk: dict[str, str], alg: str) -> None:
    """Check the device headers as the server does (api/routes/push.py)."""
    message = canonical_request(
        device_id=request.headers.get(DEVICE_ID_HEADER, ""),
        method=request.method,
        target=request.url.raw_path.decode("ascii"),
        timestamp=int(request.headers[TIMESTAMP_HEADER]),
        nonce=request.headers[NONCE_HEADER],
        body=request.content,
    )
    key = parse_public_key(jwk, alg)
    verify_signature(key, message, signature=request.headers[SIGNATURE_HEADER])


@pytest.mark.parametrize("alg", list(DeviceAlgorithm))
def test_enroll_then_answer_signs_every_request(tmp_path: Path, alg: DeviceAlgorithm) -> None:
    keys: dict[str, dict[str, str]] = {}
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.headers[TIMESTAMP_HEADER] == str(int(NOW))
        if request.url.path == "/v1/devices":
            body = json.loads(request.content)
            assert body["token"] == "tok" and body["alg"] == alg.value
            assert DEVICE_ID_HEADER not in request.headers  # no id before enrolment
            keys["fct_1"] = body["public_key"]
            _verify(request, keys["fct_1"], alg.value)
            return httpx.Response(201, json={"device_id": "fct_1", "subject": "alice"})
        _verify(request, keys[request.headers[DEVICE_ID_HEADER]], alg.value)
        assert json.loads(request.content) == {"decision": "approve", "number": 47}
        return httpx.Response(200, json={"state": "approved"})

    file = KeyFile(tmp_path / "keys.json")
    device = Authenticator(file, transport=httpx.MockTransport(server), clock=lambda: NOW)
    entry = device.enroll(enroll_uri(SERVER, "tok"), name="laptop", alg=alg)
    assert (entry.device_id, entry.subject, entry.server) == ("fct_1", "alice", SERVER)
    assert file.load() == [entry]
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
    assert device.answer("psh_1", approve=True, number=47) == "approved"
    assert seen[-1].url.path == "/v1/devices/pushes/psh_1"


def test_answer_tries_each_device_until_one_knows_the_push(tmp_path: Path) -> None:
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/devices":
            number = len(asked) + 1
            asked.append("enroll")
            return httpx.Response(201, json={"device_id": f"fct_{number}", "subject": "alice"})
        asked.append(request.headers[DEVICE_ID_HEADER])
        if request.headers[DEVICE_ID_HEADER] == "fct_1":
            return httpx.Response(404, json={"detail": "no such push"})
        return httpx.Response(200, json={"state": "denied"})

    device = Authenticator(KeyFile(tmp_path / "keys.json"), transport=httpx.MockTransport(server))
    for _ in range(2):
        device.enroll(enroll_uri(SERVER, "tok"), name="x", alg=DeviceAlgorithm.ES256)
    assert device.answer("psh_1", approve=False) == "denied"
    assert asked[2:] == ["fct_1", "fct_2"]


def test_a_push_no_device_knows(tmp_path: Path) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/devices":
            return httpx.Response(201, json={"device_id": "fct_1"})
        return httpx.Response(404)

    device = Authenticator(KeyFile(tmp_path / "keys.json"), transport=httpx.MockTransport(server))
    device.enroll(enroll_uri(SERVER, "tok"), name="x", alg=DeviceAlgorithm.EDDSA)
    with pytest.raises(AuthenticatorError, match="no enrolled device has a push psh_9"):
        device.answer("psh_9", approve=False)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(409, json={"detail": "the push was answered"}), "the push was answered"),
        (httpx.Response(502, text="bad gateway"), "HTTP 502"),
        (httpx.Response(200, json=[1, 2]), "the answer is not a JSON object"),
        (httpx.Response(404, json={"detail": "not found"}), "not found"),
    ],
)
def test_server_answers_become_one_line(response: httpx.Response, message: str) -> None:
    from piigate.factors.push.protocol import generate_device_key

    api = DeviceApi(transport=httpx.MockTransport(lambda request: response))
    key = generate_device_key(DeviceAlgorithm.ES256)
    with pytest.raises(AuthenticatorError) as caught:
        api.request(SERVER, "GET", "/v1/devices/pending?wait=0", key=key, device_id="fct_1")
    assert str(caught.value) == f"{SERVER}: {message}"


def test_an_unreachable_server_names_only_the_error_class() -> None:
    from piigate.factors.push.protocol import generate_device_key

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api = DeviceApi(transport=httpx.MockTransport(down))
    key = generate_device_key(DeviceAlgorithm.ES256)
    with pytest.raises(AuthenticatorError, match=f"^cannot reach {SERVER}: ConnectError$"):
        api.request(SERVER, "GET", "/v1/devices/pending", key=key, device_id="fct_1")


def test_what_a_push_shows() -> None:
    push = {
        "id": "psh_1",
        "subject": "alice",
        "action": "transact",
        "resource": {"type": "account", "id": "acc_9"},
        "pii": [],
        "transaction": {"amount": "2500.00", "currency": "EUR", "payee": "GB33BUKB2020"},
        "context": {"requested_by": "bank-app"},
        "number": 47,
    }
    line = describe_push(push)
    assert line == (
        "psh_1  for alice  transact  account/acc_9  pii: -  2500.00 EUR to GB33BUKB2020  "
        "asked by bank-app"
    )
    assert "47" not in line  # number matching: the page shows it, never the device
    assert "  -  pii: ssn" in describe_push({"id": "psh_2", "action": "read", "pii": ["ssn"]})


@pytest.mark.parametrize(
    ("value", "ok"),
    [("psh_AbC-12", True), ("psh 1", False), ("../../v1/factors", False), ("", False)],
)
def test_push_ids_are_safe_in_a_path(value: str, ok: bool) -> None:
    assert is_push_id(value) is ok
