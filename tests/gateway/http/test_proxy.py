"""The reverse proxy in one process: the engine on SQLite, the sample customer API on a real
loopback port, the gateway as an ASGI app. The wire behaviour a client and the upstream see."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from loopback_support import free_port, serve_uvicorn
from piigate.api.auth import api_key_caller
from piigate.api.services import Services
from piigate.callers import Caller
from piigate.config import Settings
from piigate.demo.customers import create_customers_app
from piigate.gateway.http.config import load_gateway_config_text
from piigate.gateway.http.deciders import EngineDecider
from piigate.gateway.http.gate import Gate, GatewayCallers
from piigate.gateway.http.proxy import HttpGateway, framing_problem
from piigate.gateway.http.upstream import Upstream
from piigate.identity.apikeys import generate_api_key
from piigate.policy.holder import PolicyHolder
from piigate.risk.devices import new_device_id
from piigate.risk.keys import load_risk_key
from piigate.risk.observation import Feature, keyed

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
PUBLIC = "http://piigate.test"
ROUTES = """\
gateway:
  http:
    upstream: {upstream}
    default: deny
    max_body: 4096
    routes:
      - match: {{method: GET, path: "/customers/{{id}}"}}
        action: read
        resource: {{type: customer, id: "{{id}}"}}
        response_fields:
          "$.ssn": ssn
          "$.bank.account": bank_account
          "$.address": mailing_address
      - match: {{method: [PUT, PATCH], path: "/customers/{{id}}"}}
        action: update
        resource: {{type: customer, id: "{{id}}"}}
        request_fields: {{"$.ssn": ssn, "$.address": mailing_address}}
        response_fields: {{"$.ssn": ssn, "$.bank.account": bank_account}}
      - match: {{method: [GET, POST], path: "/echo"}}
        action: read
      - match: {{method: GET, path: "/echo-masked"}}
        action: read
        response_fields: {{"$.ssn": ssn}}
      - match: {{method: GET, path: "/text"}}
        action: read
        response_fields: {{"$.ssn": ssn}}
      - match: {{method: POST, path: "/upload"}}
        action: update
      - match: {{method: GET, path: "/nested"}}
        action: read
        response_fields: {{"$..ssn": ssn}}
      - match: {{method: GET, path: "/files/{{n}}"}}
        action: read
"""
# What the upstream's /upload parsed, request by request.
UPLOADS: list[dict[str, str]] = []


async def _echo(request: Request) -> Response:
    return JSONResponse({"headers": [[k, v] for k, v in request.headers.items()]})


async def _echo_masked(request: Request) -> Response:
    body = {"ssn": "900-12-3456", "headers": [[k, v] for k, v in request.headers.items()]}
    headers = {"etag": '"v1"', "last-modified": "Tue, 01 Dec 2026 00:00:00 GMT"}
    return JSONResponse(body, headers={**headers, "cache-control": "public, max-age=60"})


async def _text(request: Request) -> Response:
    return PlainTextResponse("ssn 900-12-3456")


async def _nested(request: Request) -> Response:
    """The same SSN wherever an ``?include=`` or a version may put it."""
    ssn = "900-12-3456"
    return JSONResponse({"ssn": ssn, "related": [{"ssn": ssn, "owner": {"ssn": ssn}}], "n": 1})


async def _upload(request: Request) -> Response:
    async with request.form() as form:
        fields = {
            k: v if isinstance(v, str) else (await v.read()).decode() for k, v in form.items()
        }
    UPLOADS.append(fields)
    return JSONResponse(fields)


def _upstream_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/echo", _echo, methods=["GET", "POST"]),
            Route("/echo-masked", _echo_masked),
            Route("/text", _text),
            Route("/upload", _upload, methods=["POST"]),
            Route("/nested", _nested),
            Mount("/", create_customers_app()),
        ]
    )


@dataclass
class Rig:
    client: httpx.AsyncClient
    key: str
    upstream: str
    services: Services
    gateway: HttpGateway


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    UPLOADS.clear()
    holder = PolicyHolder.from_file(str(EXAMPLES / "policy.yaml"))
    settings = Settings(
        policy_path=str(EXAMPLES / "policy.yaml"),
        data_dir=tmp_path,
        audit_writer="thread",
        public_url=PUBLIC,
    )
    services = Services(settings, policy=holder)
    await services.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(services.stop)
        base = await stack.enter_async_context(serve_uvicorn(_upstream_app(), lifespan="on"))
        assert holder.current is not None
        config = load_gateway_config_text(ROUTES.format(upstream=base), holder.current)

        async def keys(credential: str) -> Caller:
            return await api_key_caller(services, credential)

        gate = Gate(
            config,
            callers=GatewayCallers(jwt=None, api_keys=keys, clock=services.clock),
            decider=EngineDecider(services.engine, PUBLIC, services.devices),
        )
        upstream = Upstream(base)
        stack.push_async_callback(upstream.aclose)
        metrics = services.metrics
        gateway = HttpGateway(
            gate, upstream, timings=metrics.gateway, phases=metrics.gateway_phases
        )
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw")
        )
        key_id, secret, digest = generate_api_key()
        await services.store.create_api_key(
            key_id, "app", digest, [], ["customers"], services.clock.now()
        )
        yield Rig(client, secret.reveal(), base, services, gateway)


def _auth(rig: Rig) -> dict[str, str]:
    return {"authorization": f"Bearer {rig.key}"}


async def test_a_read_comes_back_masked_with_what_would_unlock_it(rig: Rig) -> None:
    answer = await rig.client.get("/customers/1", headers=_auth(rig))
    assert answer.status_code == 200
    body = answer.json()
    assert body["ssn"] == "***-**-3456"
    assert body["bank"] == {"account": "******************3000", "bank_name": "Demo Bank"}
    assert body["address"]["street"] == "1 Example Street"  # the rule masks identity numbers
    assert answer.headers["piigate-masked"] == "bank_account, ssn"
    unlock = answer.headers["piigate-unlock"]
    assert unlock.startswith('acr_values="urn:piigate:aal2", max_age=300, challenge="chl_')
    assert int(answer.headers["content-length"]) == len(answer.content)


async def test_a_descendant_selector_masks_a_field_at_any_depth(rig: Rig) -> None:
    answer = await rig.client.get("/nested", headers=_auth(rig))
    assert answer.status_code == 200
    masked = "***-**-3456"
    assert answer.json() == {
        "ssn": masked,
        "related": [{"ssn": masked, "owner": {"ssn": masked}}],
        "n": 1,
    }
    assert "900-12" not in answer.text


async def test_an_update_of_an_ssn_is_challenged_and_never_reaches_the_upstream(rig: Rig) -> None:
    answer = await rig.client.put("/customers/2", headers=_auth(rig), json={"ssn": "900-00-0001"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        'Bearer error="insufficient_user_authentication", acr_values="urn:piigate:aal2", '
        "max_age=300"
    )
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    challenge = problem["challenge"]
    assert challenge["verify_url"] == f"{PUBLIC}/v1/challenges/{challenge['id']}/verify"
    assert problem["required"]["level"] == "aal2"
    assert "900-00-0001" not in answer.text
    async with httpx.AsyncClient() as direct:
        record = (await direct.get(f"{rig.upstream}/customers/2")).json()
    assert record["ssn"] == "900-65-4321"


async def test_a_body_that_is_not_json_touches_every_class_of_the_route(rig: Rig) -> None:
    headers = {**_auth(rig), "content-type": "application/json"}
    deep = b"[" * 2000 + b"]" * 2000  # deeper than the parser's stack
    for body in (b"{not json", b'{"name": "x", "name": "y"}', deep):
        answer = await rig.client.patch("/customers/2", headers=headers, content=body)
        assert answer.status_code == 401, body[:20]


async def test_a_write_without_pii_fields_goes_through(rig: Rig) -> None:
    answer = await rig.client.patch("/customers/3", headers=_auth(rig), json={"tier": "gold"})
    assert answer.status_code == 200
    assert answer.json()["tier"] == "gold"


async def test_a_writes_answer_is_read_and_masked_as_a_read_would_be(rig: Rig) -> None:
    # The change touches no PII and goes through; the record it echoes is a read of the SSN
    # and the bank account, which the policy masks without a step-up.
    answer = await rig.client.patch("/customers/3", headers=_auth(rig), json={"tier": "silver"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["tier"] == "silver"
    assert body["ssn"].startswith("***-**-") and body["bank"]["account"].startswith("***")
    assert answer.headers["piigate-masked"] == "bank_account, ssn"
    assert 'challenge="chl_' in answer.headers["piigate-unlock"]
    async with httpx.AsyncClient() as direct:
        record = (await direct.get(f"{rig.upstream}/customers/3")).json()
    assert record["tier"] == "silver"  # the write itself went through
    assert record["ssn"] not in answer.text


async def test_the_upstream_sees_the_verified_subject_and_never_piigate_credentials(
    rig: Rig,
) -> None:
    headers = {
        **_auth(rig),
        "piigate-subject": "admin",
        "piigate-level": "aal3",
        "piigate-grant": "a-grant-token",
        "cookie": "piigate_session=s1; theme=dark; piigate_grant=g1",
        "connection": "x-secret-hop",
        "x-secret-hop": "1",
        "x-forwarded-for": "10.9.9.9",
        "x-original-url": "/customers/1",  # what IIS or Symfony would route by instead
        "x-rewrite-url": "/customers/1",
        "x-kept": "yes",
        # CGI, WSGI, Rack and PHP read these as the names above (HTTP_PIIGATE_SUBJECT, ...)
        "piigate_subject": "admin",
        "PIIGate_Level": "aal3",
        "x_forwarded_for": "10.9.9.9",
        "x_original_url": "/customers/1",
        "x_kept_too": "yes",
    }
    answer = await rig.client.get("/echo", headers=headers)
    assert answer.status_code == 200
    seen: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        seen.setdefault(name, []).append(value)
    assert seen["piigate-subject"] != ["admin"] and len(seen["piigate-subject"]) == 1
    assert "piigate-level" not in seen  # an API key proved no level
    assert "piigate-grant" not in seen
    assert seen["cookie"] == ["theme=dark"]
    assert "x-secret-hop" not in seen
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert "x-original-url" not in seen and "x-rewrite-url" not in seen
    assert seen["x-kept"] == ["yes"]
    assert not {"piigate_subject", "piigate_level", "x_forwarded_for", "x_original_url"} & set(seen)
    assert seen["x_kept_too"] == ["yes"]


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/customers/3", {"x-http-method-override": "DELETE"}),
        ("/customers/3", {"X-HTTP-Method": "DELETE"}),
        ("/customers/3", {"x-method-override": "PUT"}),
        ("/customers/3", {"X_HTTP_Method_Override": "DELETE"}),  # HTTP_X_HTTP_METHOD_OVERRIDE
        ("/customers/3?_method=DELETE", {}),
        ("/customers/3?a=1&%5Fmethod=delete", {}),
        ("/echo?_METHOD=DELETE", {}),
    ],
)
async def test_a_method_override_is_refused_before_the_upstream(
    rig: Rig, target: str, headers: dict[str, str]
) -> None:
    """Frameworks run such a request as the method it names: the gate would rule on a masked
    read while the upstream deleted the record."""
    answer = await rig.client.get(target, headers={**_auth(rig), **headers})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert "method override" in answer.json()["detail"]
    async with httpx.AsyncClient() as direct:
        assert (await direct.get(f"{rig.upstream}/customers/3")).status_code == 200


@pytest.mark.parametrize("name", ["authorization", "content-type"])
async def test_a_header_given_twice_that_the_upstream_could_read_otherwise_is_refused(
    rig: Rig, name: str
) -> None:
    """The gate reads the first Authorization; an upstream may take the last, another caller
    (a stolen token) than the one whose step-up the gate counted."""
    value = f"Bearer {rig.key}" if name == "authorization" else "application/json"
    headers = [("authorization", f"Bearer {rig.key}"), (name, value)]
    if name == "content-type":
        headers.append((name, "application/x-www-form-urlencoded"))
    answer = await rig.client.get("/echo", headers=headers)
    assert answer.status_code == 400
    assert answer.json()["detail"] == f"the request has more than one {name} header"


async def test_a_form_posting_a_method_is_refused_and_other_forms_go_through(rig: Rig) -> None:
    """Rails, Laravel and Symfony run a form's POST with a ``_method`` field as that method:
    a form's body is read on any route, and sent on as it came when it names none."""
    form = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    answer = await rig.client.post(
        "/echo", headers={**_auth(rig), **form}, content=b"note=x&_method=DELETE"
    )
    assert answer.status_code == 400 and "method override" in answer.json()["detail"]
    answer = await rig.client.post("/echo", headers={**_auth(rig), **form}, content=b"note=x")
    assert answer.status_code == 200
    assert ["content-length", "6"] in answer.json()["headers"]  # the body went on whole


@pytest.mark.parametrize(
    "body",
    [
        b'{"note": "x", "_method": "DELETE"}',
        b'{"_METHOD": "put"}',
        b'{"\\u005fmethod": "DELETE"}',  # an escape is the same member name
        b'{"note": "x", "_method": "GET", "_method": "DELETE"}',  # the last one counts there
    ],
)
async def test_a_json_post_naming_a_method_is_refused(rig: Rig, body: bytes) -> None:
    """Laravel reads ``_method`` from a JSON body too."""
    json_type = {"content-type": "application/json"}
    answer = await rig.client.post("/echo", headers={**_auth(rig), **json_type}, content=body)
    assert answer.status_code == 400 and "method override" in answer.json()["detail"]


async def test_json_posts_without_a_method_go_through_whole(rig: Rig) -> None:
    json_type = {"content-type": "application/vnd.api+json"}
    for body in (b'{"note": {"_method": "nested, not read"}}', b'["_method"]', b"not json"):
        answer = await rig.client.post("/echo", headers={**_auth(rig), **json_type}, content=body)
        assert answer.status_code == 200, body
        assert ["content-length", str(len(body))] in answer.json()["headers"]


MULTIPART = "multipart/form-data; boundary=XyZ"


def _multipart(*parts: tuple[str, str]) -> bytes:
    """A multipart body of ``(part headers, content)``."""
    out = b"".join(f"--XyZ\r\n{h}\r\n\r\n{c}\r\n".encode() for h, c in parts)
    return out + b"--XyZ--\r\n"


async def _in_pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(body), size):
        yield body[at : at + size]


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; name="_method"',
        "form-data; name=_METHOD",
        'form-data; name=".method"',  # PHP reads it as _method
        "form-data; name*=utf-8''%5Fmethod",
    ],
)
async def test_a_multipart_post_naming_a_method_is_stopped_as_it_streams(
    rig: Rig, disposition: str
) -> None:
    """Rails, Laravel and Symfony read ``_method`` from a multipart form too. Its body is
    streamed on, not read whole: the part that names a method stops it before the upstream
    has all of it, so the upstream never runs the request."""
    body = _multipart(
        ('Content-Disposition: form-data; name="note"', "x" * 300),
        (f"Content-Disposition: {disposition}", "DELETE"),
    )
    headers = {**_auth(rig), "content-type": MULTIPART}
    answer = await rig.client.post("/upload", headers=headers, content=_in_pieces(body, 7))
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "method override" in answer.json()["detail"]
    assert UPLOADS == []


async def test_multipart_posts_without_a_method_stream_through_whole(rig: Rig) -> None:
    body = _multipart(
        ('Content-Disposition: form-data; name="note"', 'name="_method" is only text here'),
        ('Content-Disposition: form-data; name="file"; filename="a.txt"', "--XyZ- not a delimiter"),
    )
    headers = {**_auth(rig), "content-type": MULTIPART}
    answer = await rig.client.post("/upload", headers=headers, content=_in_pieces(body, 5))
    assert answer.status_code == 200, answer.text
    expected = {"note": 'name="_method" is only text here', "file": "--XyZ- not a delimiter"}
    assert answer.json() == expected
    assert len(UPLOADS) == 1 and UPLOADS[0] == expected


async def test_a_multipart_post_without_a_boundary_is_refused(rig: Rig) -> None:
    headers = {**_auth(rig), "content-type": "multipart/form-data"}
    answer = await rig.client.post("/upload", headers=headers, content=b"--x\r\n\r\n")
    assert answer.status_code == 400
    assert answer.json()["detail"] == "the multipart body has no boundary"
    assert UPLOADS == []


async def test_a_post_without_a_content_type_is_read_as_a_form_as_it_streams(rig: Rig) -> None:
    """Rack parses a POST that names no media type as a form, ``_method`` included; such a
    body may be any upload, so it is not held: it streams, past ``max_body`` (4 KiB here), and
    stops at a ``_method=``."""
    padding = b"x" * 6000
    for body, status in ((b"_method=PUT", 400), (b"a=" + padding + b"&_method=PUT", 400)):
        request = rig.client.build_request(
            "POST", "/upload", headers=_auth(rig), content=_in_pieces(body, 1000)
        )
        assert "content-type" not in request.headers
        answer = await rig.client.send(request)
        assert answer.status_code == status and "method override" in answer.json()["detail"]
    assert UPLOADS == []
    request = rig.client.build_request("POST", "/echo", headers=_auth(rig), content=padding)
    answer = await rig.client.send(request)
    assert answer.status_code == 200, answer.text
    assert ["content-length", str(len(padding))] in answer.json()["headers"]


async def test_unmatched_routes_are_refused_with_default_deny(rig: Rig) -> None:
    answer = await rig.client.get("/customers", headers=_auth(rig))
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_matched_route_needs_a_caller(rig: Rig) -> None:
    answer = await rig.client.get("/customers/1")
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    bad = await rig.client.get("/customers/1", headers={"authorization": "Bearer pgk_nope"})
    assert bad.status_code == 401


async def test_an_answer_that_cannot_be_masked_is_never_passed_through(rig: Rig) -> None:
    answer = await rig.client.get("/text", headers=_auth(rig))
    assert answer.status_code == 502
    assert "900-12-3456" not in answer.text
    assert answer.json()["code"] == "upstream_unavailable"


async def test_an_oversize_body_is_refused(rig: Rig) -> None:
    answer = await rig.client.put("/customers/1", headers=_auth(rig), json={"note": "x" * 5000})
    assert answer.status_code == 413


async def test_an_upstream_that_is_down_is_a_502(rig: Rig) -> None:
    gateway = rig.client._transport.app  # type: ignore[attr-defined]
    gateway.upstream = Upstream(f"http://127.0.0.1:{free_port()}")
    try:
        answer = await rig.client.get("/echo", headers=_auth(rig))
    finally:
        await gateway.upstream.aclose()
    assert answer.status_code == 502
    assert answer.json()["code"] == "upstream_unavailable"


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([("content-length", "5"), ("transfer-encoding", "chunked")], "together"),
        ([("content-length", "5"), ("content-length", "6")], "conflicting"),
        ([("content-length", "+5")], "invalid"),
        ([("transfer-encoding", "gzip, chunked")], "other than chunked"),
        ([("content-length", "5")], None),
        ([("transfer-encoding", "chunked")], None),
    ],
)
def test_framing(headers: list[tuple[str, str]], problem: str | None) -> None:
    found = framing_problem(headers)
    assert (found is None) if problem is None else (problem in (found or ""))


async def test_a_masked_answer_is_asked_whole_and_kept_out_of_shared_caches(rig: Rig) -> None:
    asked = {
        **_auth(rig),
        "accept-encoding": "gzip",
        "if-none-match": '"v1"',
        "range": "bytes=0-10",
    }
    answer = await rig.client.get("/echo-masked", headers=asked)
    assert answer.status_code == 200
    body = answer.json()
    assert body["ssn"] == "***-**-3456"
    seen = dict(body["headers"])
    assert seen["accept-encoding"] == "identity"
    assert "if-none-match" not in seen and "range" not in seen
    assert answer.headers["cache-control"] == "private, no-store"
    assert "etag" not in answer.headers and "last-modified" not in answer.headers


async def _decided_device(rig: Rig) -> object:
    """The device of the latest decision, as the risk engine's audit evidence names it."""
    [*_, event] = await rig.services.audit.list_events(types=["decision"], limit=1000)
    risk = event.data["risk"]
    assert isinstance(risk, dict)
    return risk.get("context", {}).get("device")


async def _device_key(rig: Rig, device: str) -> str:
    services = rig.services
    key = await load_risk_key(services.store, services.keyring, now=services.clock.now())
    return keyed(key.reveal(), Feature.DEVICE, device)


async def test_the_device_cookie_reaches_the_decision_and_never_the_upstream(rig: Rig) -> None:
    device = new_device_id()
    cookie = rig.services.devices.sign(device)
    headers = {**_auth(rig), "cookie": f"theme=dark; piigate_device={cookie}"}
    answer = await rig.client.get("/echo", headers=headers)
    assert answer.status_code == 200
    assert await _decided_device(rig) == await _device_key(rig, device)
    seen = [v for k, v in answer.json()["headers"] if k == "cookie"]
    assert seen == ["theme=dark"]
    # A forged cookie is no device, even beside a header; without a cookie, the header's id.
    forged = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    headers = {**_auth(rig), "cookie": f"piigate_device={forged}", "piigate-device": "d-9"}
    assert (await rig.client.get("/echo", headers=headers)).status_code == 200
    assert await _decided_device(rig) is None
    assert (
        await rig.client.get("/echo", headers={**_auth(rig), "piigate-device": "d-9"})
    ).status_code == 200
    assert await _decided_device(rig) == await _device_key(rig, "d-9")


async def test_each_request_is_timed_by_its_status_class(rig: Rig) -> None:
    await rig.client.get("/echo", headers=_auth(rig))
    await rig.client.get("/nowhere", headers=_auth(rig))
    await rig.client.get("/text", headers=_auth(rig))  # not maskable: a 502 problem
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    scrape = generate_latest(rig.services.metrics.registry).decode()
    counts = {
        (s.labels["gateway"], s.labels["code"]): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
        if s.name == "piigate_gateway_request_seconds_count"
    }
    assert counts == {("http", "2xx"): 1, ("http", "4xx"): 1, ("http", "5xx"): 1}


def _phases(rig: Rig) -> dict[str, tuple[float, float]]:
    """Each phase's (count, sum of seconds) in a scrape of the gateway's registry."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    scrape = generate_latest(rig.services.metrics.registry).decode()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(scrape):
        for s in family.samples:
            if s.name.startswith("piigate_gateway_http_phase_seconds_"):
                kind = s.name.rsplit("_", 1)[1]
                found.setdefault(s.labels["phase"], {})[kind] = s.value
    return {phase: (got["count"], got["sum"]) for phase, got in found.items()}


async def test_each_phase_of_a_request_is_timed(rig: Rig) -> None:
    assert _phases(rig) == {}
    # A read whose answer is masked: decided, sent while its audit commits, masked, then it
    # waits for the commit (however short that wait).
    assert (await rig.client.get("/customers/1", headers=_auth(rig))).status_code == 200
    counts = {phase: count for phase, (count, _) in _phases(rig).items()}
    assert counts == {"decision": 1, "upstream": 1, "masking": 1, "audit_wait": 1}
    assert all(seconds > 0 for _, seconds in _phases(rig).values())
    # Streamed back: no masking.
    assert (await rig.client.get("/echo", headers=_auth(rig))).status_code == 200
    # A write is audited before it is sent: its decision holds the commit, nothing waits after.
    patched = await rig.client.patch("/customers/3", headers=_auth(rig), json={"tier": "gold"})
    assert patched.status_code == 200
    # Refused: the decision only.
    assert (await rig.client.get("/nowhere", headers=_auth(rig))).status_code == 403
    counts = {phase: count for phase, (count, _) in _phases(rig).items()}
    assert counts == {"decision": 4, "upstream": 3, "masking": 2, "audit_wait": 2}


async def _asgi_messages(rig: Rig, path: str) -> list[dict[str, object]]:
    """What the gateway sends its server for ``GET path``: the ASGI messages, in order."""
    sent: list[dict[str, object]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"gw"), (b"authorization", f"Bearer {rig.key}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("gw", 80),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await rig.gateway(scope, receive, send)
    return sent


async def test_a_streamed_answer_goes_on_as_it_comes_and_a_small_one_in_one_message(
    rig: Rig,
) -> None:
    """An answer that is not masked streams back part by part, its whole body unchanged; one
    whose body has all come with its first part (a small one, an empty one) is sent as one
    body message."""
    size = 1024 * 1024
    streamed = await _asgi_messages(rig, f"/files/{size}")
    assert streamed[0]["type"] == "http.response.start" and streamed[0]["status"] == 200
    bodies = streamed[1:]
    assert len(bodies) > 2 and all(m["type"] == "http.response.body" for m in bodies)
    assert [bool(m.get("more_body")) for m in bodies] == [True] * (len(bodies) - 1) + [False]
    assert sum(len(m["body"]) for m in bodies) == size  # type: ignore[arg-type]
    for small in (10, 0):
        sent = await _asgi_messages(rig, f"/files/{small}")
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert len(sent[1]["body"]) == small and not sent[1].get("more_body")  # type: ignore[arg-type]
