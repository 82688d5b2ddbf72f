"""``piigate gateway http`` end to end, with real processes on loopback (``gateway_stack``):
the sample customer API behind the gateway, ``piigate serve`` beside it on the same store, and a
real OpenID provider issuing the bearer tokens. Every refusal is a problem+json the test reads,
and what the upstream received is checked behind the gateway (``/_seen``, ``/echo``).

Started once for the module: the upstream, ``piigate serve``, the gateway (engine in process),
one in front of a port nothing listens on, and one asking the service remotely (``--engine``);
the rate-limit test adds two gateways counting in one Redis.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from gateway_client import (
    auth_params,
    bearer,
    customer,
    deleted,
    enroll_totp,
    problem,
    raw_exchange,
    verified_grant,
)
from gateway_stack import MAX_BODY, Stack, limited_gateways, started_stack, worker_gateway
from idp_support import OidcIdp

pytestmark = pytest.mark.slow

AAL1, AAL2 = "urn:piigate:aal1", "urn:piigate:aal2"
STEP_UP_AAL2_5M = 'Bearer error="insufficient_user_authentication", acr_values="{acr}", max_age=300'
RUN = secrets.token_hex(3)  # Redis and the store outlive a run: each run's people are new


def person(name: str) -> str:
    return f"{name}-{RUN}"


@pytest.fixture(scope="module")
def stack(oidc_idp: OidcIdp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started_stack(tmp_path_factory.mktemp("gateway"), oidc_idp) as started:
        yield started


@pytest.fixture(scope="module")
def gw(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway, timeout=30) as client:
        yield client


# -- reads, updates and step-ups ------------------------------------------------------------


def test_reads_are_masked_until_a_fresh_aal2_login(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    weak = oidc_idp.token(subject=person("alice"), acr=AAL1)
    one = gw.get("/customers/1", headers=bearer(weak))
    assert one.status_code == 200, one.text
    record = one.json()
    assert record["ssn"] == "***-**-3456" and record["passport_number"] == "****4567"
    assert record["bank"] == {"account": "******************3000", "bank_name": "Demo Bank"}
    assert record["phone"] == "+14155550101"  # no rule asks a step-up for phones
    assert one.headers["piigate-masked"] == "bank_account, passport, ssn"
    unlock = auth_params(one.headers["piigate-unlock"])
    assert unlock["acr_values"] == AAL2 and unlock["max_age"] == "300"
    assert unlock["challenge"].startswith("chl_")
    listed = gw.get("/customers", headers=bearer(weak))
    assert listed.status_code == 200
    assert all(c["ssn"].startswith("***-**-") for c in listed.json()["customers"])
    assert all(c["bank"]["account"].startswith("*****") for c in listed.json()["customers"])

    strong = oidc_idp.token(subject=person("alice"), acr=AAL2)
    clear = gw.get("/customers/1", headers=bearer(strong))
    assert clear.status_code == 200 and "piigate-masked" not in clear.headers
    assert clear.json() == customer(stack, "1")
    listed = gw.get("/customers", headers=bearer(strong)).json()["customers"]
    assert "900-12-3456" in {c["ssn"] for c in listed}


def test_an_update_stops_at_the_gateway_with_a_challenge(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    token = oidc_idp.token(subject=person("bob"), acr=AAL1)
    before = customer(stack, "2")
    refused = gw.put("/customers/2", json={"ssn": "900-00-0002"}, headers=bearer(token))
    body = problem(refused, 401, "insufficient_user_authentication")
    assert refused.headers["www-authenticate"] == STEP_UP_AAL2_5M.format(acr=AAL2)
    challenge = body["challenge"]
    assert isinstance(challenge, dict) and challenge["id"].startswith("chl_")
    assert challenge["verify_url"] == f"{stack.service}/v1/challenges/{challenge['id']}/verify"
    assert body["required"] == {
        "level": "aal2",
        "acr_values": [AAL2],
        "max_age": 300,
        "methods": ["totp", "sms", "push", "webauthn", "recovery"],
    }
    assert customer(stack, "2") == before
    assert {"method": "PUT", "target": "/customers/2"} not in stack.seen()


def test_a_federated_step_up_at_the_identity_provider(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    change = {"ssn": "900-00-0003"}
    refused = gw.put(
        "/customers/2", json=change, headers=bearer(oidc_idp.token(subject=person("bob"), acr=AAL1))
    )
    asked = auth_params(refused.headers["www-authenticate"])
    for weaker in (
        {"acr": AAL1, "acr_values": asked["acr_values"]},  # the user proved less than asked
        {"acr": asked["acr_values"], "auth_age": 600},  # proved long before max_age
    ):
        token = oidc_idp.token(subject=person("bob"), max_age=int(asked["max_age"]), **weaker)
        still = gw.put("/customers/2", json=change, headers=bearer(token))
        problem(still, 401, "insufficient_user_authentication")
    assert customer(stack, "2")["ssn"] == "900-65-4321"

    token = oidc_idp.token(
        subject=person("bob"), acr=asked["acr_values"], max_age=int(asked["max_age"])
    )
    done = gw.put("/customers/2", json=change, headers=bearer(token))
    assert done.status_code == 200, done.text
    assert done.json()["ssn"] == "900-00-0003" == customer(stack, "2")["ssn"]


def test_a_step_up_at_piigate_with_totp(stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp) -> None:
    token = oidc_idp.token(subject=person("carol"), acr=AAL1)
    totp = enroll_totp(stack, token)
    change = {"passport_number": "Q0000001"}
    refused = gw.patch("/customers/1", json=change, headers=bearer(token))
    grant = verified_grant(stack, refused, token, totp)
    done = gw.patch("/customers/1", json=change, headers=bearer(token, **{"PIIGate-Grant": grant}))
    assert done.status_code == 200, done.text
    assert customer(stack, "1")["passport_number"] == "Q0000001"
    # the grant is carol's: another person cannot use it
    other = oidc_idp.token(subject=person("mallory"), acr=AAL1)
    taken = gw.patch("/customers/1", json=change, headers=bearer(other, **{"PIIGate-Grant": grant}))
    problem(taken, 401, "insufficient_user_authentication")


def test_a_delete_grant_is_spent_on_its_one_request(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    # Even a fresh aal2 login is not enough: max_age 0 asks a step-up for this one request.
    token = oidc_idp.token(subject=person("dave"), acr=AAL2)
    totp = enroll_totp(stack, token)
    refused = gw.delete("/customers/3", headers=bearer(token))
    assert auth_params(refused.headers["www-authenticate"])["max_age"] == "0"
    grant = verified_grant(stack, refused, token, totp)
    with_grant = bearer(token, **{"PIIGate-Grant": grant})
    elsewhere = gw.delete("/customers/2", headers=with_grant)
    problem(elsewhere, 401, "insufficient_user_authentication")
    assert not deleted(stack, "2")

    done = gw.delete("/customers/3", headers=with_grant)
    assert done.status_code == 204, done.text
    assert deleted(stack, "3")
    again = gw.delete("/customers/3", headers=with_grant)  # not the upstream's 404
    problem(again, 401, "insufficient_user_authentication")
    assert sum(r == {"method": "DELETE", "target": "/customers/3"} for r in stack.seen()) == 1


def test_a_transfer_grant_is_bound_to_its_amount_and_payee(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    token = oidc_idp.token(subject=person("erin"), acr=AAL1)
    small = {"amount": "50.00", "currency": "EUR", "to_account": "DE02120300000000202051"}
    assert gw.post("/transfers", json=small, headers=bearer(token)).status_code == 201
    totp = enroll_totp(stack, token)
    large = {**small, "amount": "25000.00"}
    refused = gw.post("/transfers", json=large, headers=bearer(token))
    grant = verified_grant(stack, refused, token, totp)
    with_grant = bearer(token, **{"PIIGate-Grant": grant})
    for changed in ({"amount": "25000.01"}, {"to_account": "GB33BUKB20201555555555"}):
        other = gw.post("/transfers", json={**large, **changed}, headers=with_grant)
        problem(other, 401, "insufficient_user_authentication")
    # the same transfer, serialised differently (a retry may re-encode it)
    retried = json.dumps(large, indent=2).encode()
    sent = gw.post(
        "/transfers", content=retried, headers={**with_grant, "content-type": "application/json"}
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["amount"] == "25000.00"


def test_a_missing_scope_is_refused_with_insufficient_scope(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    token = oidc_idp.token(subject=person("fred"), acr=AAL2, scope="customers:read")
    refused = gw.put("/customers/1", json={"ssn": "900-00-0004"}, headers=bearer(token))
    body = problem(refused, 403, "insufficient_scope")
    assert refused.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="customers:write"'
    )
    assert body["scope"] == "customers:write"
    assert customer(stack, "1")["ssn"] == "900-12-3456"


@pytest.mark.parametrize(
    "body",
    [b'{"name": "Ada", "ssn": ', b'{"name": "Ada", "name": "Ann"}', b"name=Ada", b"\xff\xfe"],
    ids=["malformed", "duplicate-keys", "not-json", "not-utf8"],
)
def test_a_body_that_cannot_be_read_touches_every_request_field(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp, body: bytes
) -> None:
    token = oidc_idp.token(subject=person("gina"), acr=AAL1)
    headers = bearer(token, **{"content-type": "application/json"})
    refused = gw.put("/customers/1", content=body, headers=headers)
    problem(refused, 401, "insufficient_user_authentication")
    assert refused.headers["www-authenticate"] == STEP_UP_AAL2_5M.format(acr=AAL2)
    assert {"method": "PUT", "target": "/customers/1"} not in stack.seen()


# -- the upstream failing ---------------------------------------------------------------------


def test_an_upstream_down_slow_or_not_json_is_a_problem(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    token = oidc_idp.token(subject=person("hank"), acr=AAL1)
    down = httpx.get(f"{stack.down}/health", headers=bearer(token), timeout=30)
    problem(down, 502, "upstream_unavailable")
    slow = gw.get("/slow", headers=bearer(token))
    problem(slow, 504, "upstream_timeout")
    # masked, so the answer must be read: HTML cannot be, and never goes out as it came
    page = gw.get("/not-json/1", headers=bearer(token))
    problem(page, 502, "upstream_unavailable")
    assert b"3456" not in page.content and "piigate-masked" not in page.headers


# -- what reaches the upstream ----------------------------------------------------------------


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 40\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
    ],
    ids=["cl-te", "te-cl", "two-lengths", "te-not-chunked"],
)
def test_ambiguous_framing_is_refused_before_the_upstream(
    stack: Stack, oidc_idp: OidcIdp, framing: bytes
) -> None:
    token = oidc_idp.token(subject=person("ivan"), acr=AAL1)
    smuggled = b"GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (
        b"POST /echo/framing HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\n"
        + framing
        + b"\r\n0\r\n\r\n"
        + smuggled
    )
    answer = raw_exchange(stack.gateway_port, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["code"] == "bad_request"
    targets = {r["target"] for r in stack.seen()}
    assert "/echo/framing" not in targets and "/echo/smuggled" not in targets


def test_a_multipart_method_override_stops_the_upload_midway(
    stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp
) -> None:
    """The body streams through the real server and client, a part at a time: the part named
    ``_method`` never reaches the upstream, which never has the whole request; the same upload
    without it goes through whole."""
    token = oidc_idp.token(subject=person("ivan"), acr=AAL1)

    def parts(*names: str) -> Iterator[bytes]:
        for name in names:
            yield f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            time.sleep(0.05)  # each part its own chunk on the wire
            yield b"x" * 2000 + b"\r\n"
        yield b"--b--\r\n"

    headers = bearer(token, **{"content-type": "multipart/form-data; boundary=b"})
    refused = gw.post("/echo/override", headers=headers, content=parts("note", "_method"))
    problem(refused, 400, "bad_request")
    assert "method override" in str(refused.json()["detail"])
    allowed = gw.post("/echo/upload", headers=headers, content=parts("note", "file"))
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["body_bytes"] == sum(len(p) for p in parts("note", "file"))
    assert "/echo/upload" in stack.finished() and "/echo/override" not in stack.finished()


def test_what_the_upstream_receives(stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp) -> None:
    subject = person("judy")
    token = oidc_idp.token(subject=subject, acr=AAL1)
    sent = bearer(
        token,
        **{
            "PIIGate-Subject": "admin",
            "PIIGate-Level": "aal3",
            "PIIGate-Grant": "a-grant",
            "PIIGate_Subject": "admin",  # one HTTP_PIIGATE_SUBJECT behind CGI, WSGI or Rack
            "X_Forwarded_For": "203.0.113.9",
            "Cookie": "theme=dark; piigate_session=s; piigate_grant=g; lang=en",
            "Connection": "x-client-hop",
            "X-Client-Hop": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eDp5",
            "X-Forwarded-For": "203.0.113.9",
            "X-Request-Id": "r-1",
        },
    )
    with httpx.Client(base_url=stack.gateway, timeout=30) as bare:
        bare.headers.clear()  # only the headers above (and Host)
        echoed = bare.get("/echo/headers", headers=sent)
    assert echoed.status_code == 200, echoed.text
    received: dict[str, list[str]] = {}
    for name, value in echoed.json()["headers"]:
        received.setdefault(name, []).append(value)
    assert received["piigate-subject"] == [subject]
    assert received["piigate-level"] == ["aal1"]
    assert received["cookie"] == ["theme=dark; lang=en"]
    assert received["x-forwarded-for"] == ["127.0.0.1"]
    assert received["x-request-id"] == ["r-1"] and received["authorization"] == [f"Bearer {token}"]
    # nothing else: no hop-by-hop header, no grant, and no HTTP client's defaults
    forwarded = {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}
    assert set(received) == {
        "host",
        "authorization",
        "cookie",
        "x-request-id",
        "piigate-subject",
        "piigate-level",
        *forwarded,
    }
    # and the upstream's own hop-by-hop headers do not come back
    assert "x-upstream-hop" not in echoed.headers and "keep-alive" not in echoed.headers


def test_header_bytes_beyond_ascii(stack: Stack, oidc_idp: OidcIdp) -> None:
    token = oidc_idp.token(subject=person("uma"), acr=AAL1)

    def sent(value: bytes) -> tuple[bytes, bytes]:
        request = (
            b'GET /echo/bytes HTTP/1.1\r\nHost: gw";for=203.0.113.9\r\nConnection: close\r\n'
            b"Authorization: Bearer " + token.encode() + b"\r\nX-Name: " + value + b"\r\n\r\n"
        )
        head, _, body = raw_exchange(stack.gateway_port, request).partition(b"\r\n\r\n")
        return head, body

    head, body = sent("José".encode())
    assert head.startswith(b"HTTP/1.1 200 "), head
    received = {name: value.encode("latin-1") for name, value in json.loads(body)["headers"]}
    assert received["x-name"] == "José".encode()  # the client's bytes, as sent
    # a quote in the client's Host stays inside the quoted host of Forwarded
    assert received["forwarded"] == b'for=127.0.0.1;proto=http;host="gw\\";for=203.0.113.9"'
    # bytes that are not UTF-8 cannot be written as they came: refused, not altered
    head, body = sent(b"caf\xe9")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["code"] == "bad_request"

    # a subject id that cannot travel in a header is refused, never a fault
    other = oidc_idp.token(subject=person("zoë"), acr=AAL1)
    problem(httpx.get(f"{stack.gateway}/echo/bytes", headers=bearer(other)), 403, "forbidden")


def test_head_of_a_masked_read(gw: httpx.Client, oidc_idp: OidcIdp) -> None:
    token = oidc_idp.token(subject=person("alice"), acr=AAL1)
    head = gw.head("/customers/1", headers=bearer(token))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["piigate-masked"] == "bank_account, passport, ssn"
    assert "content-length" not in head.headers  # not the GET's, which masking changes


def test_body_limits(stack: Stack, gw: httpx.Client, oidc_idp: OidcIdp) -> None:
    token = oidc_idp.token(subject=person("kim"), acr=AAL1)
    big = json.dumps({"name": "x" * MAX_BODY}).encode()
    headers = bearer(token, **{"content-type": "application/json"})
    problem(gw.put("/customers/1", content=big, headers=headers), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b" " * (MAX_BODY // 2)

    problem(gw.put("/customers/1", content=chunks(), headers=headers), 413, "payload_too_large")
    assert {"method": "PUT", "target": "/customers/1"} not in stack.seen()

    # a route that does not decide on its body streams it, whatever its size
    megabyte = secrets.token_bytes(1024 * 1024)
    posted = gw.post("/echo/upload", content=megabyte, headers=bearer(token))
    assert posted.status_code == 200, posted.text
    assert posted.json()["body_bytes"] == len(megabyte)
    assert posted.json()["body_sha256"] == hashlib.sha256(megabyte).hexdigest()


# -- rate limits across gateways --------------------------------------------------------------


@pytest.fixture
def limited_pair(stack: Stack, oidc_idp: OidcIdp, redis_url: str) -> Iterator[tuple[str, str]]:
    """Two more gateways on the same store, counting in one Redis: 5 requests per subject."""
    with limited_gateways(stack, oidc_idp, {"per_subject": "5/h", "store": redis_url}) as pair:
        yield pair


@pytest.mark.redis
def test_two_gateways_hold_one_limit_in_redis(
    limited_pair: tuple[str, str], oidc_idp: OidcIdp
) -> None:
    token = oidc_idp.token(subject=person("leo"), acr=AAL1)
    left = []
    for i in range(5):
        answer = httpx.get(f"{limited_pair[i % 2]}/health", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        assert answer.headers["ratelimit-policy"] == '"per_subject";q=5;w=3600'
        left.append(auth_params(answer.headers["ratelimit"].replace(";", ", "))["r"])
    assert left == ["4", "3", "2", "1", "0"]
    for url in limited_pair:
        refused = httpx.get(f"{url}/health", headers=bearer(token))
        body = problem(refused, 429, "rate_limited")
        wait = int(refused.headers["retry-after"])
        assert 0 < wait <= 3600
        assert refused.headers["ratelimit"] == f'"per_subject";r=0;t={wait}'
        assert body["violated-policies"] == ["per_subject"]
    other = oidc_idp.token(subject=person("mia"), acr=AAL1)  # counted on its own
    assert httpx.get(f"{limited_pair[1]}/health", headers=bearer(other)).status_code == 200


# -- several worker processes -----------------------------------------------------------------


def served_by(metrics_url: str, name: str = "piigate_gateway_request_seconds_count{") -> float:
    """The requests a worker answered, from its own /metrics (``name``: the samples counted)."""
    text = httpx.get(metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.redis
def test_workers_share_the_address_one_limit_and_reloads(
    stack: Stack, oidc_idp: OidcIdp, redis_url: str
) -> None:
    with worker_gateway(stack, oidc_idp, 2, redis_url) as workers:
        token = oidc_idp.token(subject=person("ona"), acr=AAL1)
        left = []
        for _ in range(30):  # a new connection each: the kernel spreads them over the workers
            answer = httpx.get(f"{workers.url}/customers/1", headers=bearer(token))
            assert answer.status_code == 200, answer.text
            assert answer.json()["ssn"] == "***-**-3456"
            left.append(int(auth_params(answer.headers["ratelimit"].replace(";", ", "))["r"]))
        assert left == list(range(29, -1, -1)), "one count, whichever worker answered"
        problem(httpx.get(f"{workers.url}/health", headers=bearer(token)), 429, "rate_limited")
        served = [served_by(url) for url in workers.metrics]
        assert sum(served) == 31 and all(n > 0 for n in served), served
        # where the time went: 31 decided, 30 masked answers (the 429 never went upstream)
        phase = 'piigate_gateway_http_phase_seconds_count{phase="%s"}'
        decided = [served_by(url, phase % "decision") for url in workers.metrics]
        assert decided == served
        assert sum(served_by(url, phase % "masking") for url in workers.metrics) == 30

        before = workers.log.read_text().count('"gateway_reloaded"')
        workers.supervisor.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while workers.log.read_text().count('"gateway_reloaded"') < before + 2:
            assert time.monotonic() < deadline, "each worker reloads on the supervisor's SIGHUP"
            time.sleep(0.05)


# -- the engine asked remotely ----------------------------------------------------------------


def test_a_gateway_asking_the_service_remotely(stack: Stack, oidc_idp: OidcIdp) -> None:
    token = oidc_idp.token(subject=person("nora"), acr=AAL1)
    with httpx.Client(base_url=stack.remote, timeout=30) as remote:
        masked = remote.get("/customers/1", headers=bearer(token))
        assert masked.status_code == 200 and masked.json()["ssn"] == "***-**-3456"
        assert masked.headers["piigate-masked"] == "bank_account, passport, ssn"
        fresh = oidc_idp.token(subject=person("nora"), acr=AAL2)
        assert remote.get("/customers/1", headers=bearer(fresh)).json()["ssn"] == "900-12-3456"

        # a grant obtained for this gateway's request (its API key asked) unlocks it
        totp = enroll_totp(stack, token)
        change = {"address": {"street": "2 Remote Road", "city": "Springfield", "zip": "00000"}}
        refused = remote.patch("/customers/1", json=change, headers=bearer(token))
        grant = verified_grant(stack, refused, token, totp)
        done = remote.patch(
            "/customers/1", json=change, headers=bearer(token, **{"PIIGate-Grant": grant})
        )
        assert done.status_code == 200, done.text
    assert customer(stack, "1")["address"]["street"] == "2 Remote Road"


def test_no_process_logged_a_traceback(stack: Stack) -> None:
    more = sorted(stack.config.parent.glob("*.log"))  # the gateways tests added too
    for log in {*stack.logs, *more}:
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}:\n{text[-3000:]}"
