"""A real nginx in front of the sample customer API, asking ``piigate serve`` about every request
with ``auth_request`` (``/v1/forward-auth``), configured by examples/nginx-forward-auth.conf:
the very text the README shows, with its addresses replaced by free loopback ports.

nginx is the Debian package (``apt-get install nginx``), run by the test from a temporary
directory (``-p``), in the foreground; without it the test is skipped with the reason shown,
unless ``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from piigate.identity.apikeys import api_key_id
from serve_support import run_piigate, running, serving
from services_support import unavailable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NGINX_CONF = EXAMPLES / "nginx-forward-auth.conf"
# The addresses in examples/nginx-forward-auth.conf: piigate serve, the API, nginx.
SERVE, API, NGINX = "127.0.0.1:8080", "127.0.0.1:9000", "127.0.0.1:8000"
TRUST_NGINX = "forward_auth: {trusted_proxies: [127.0.0.1]}"
STEP_UP = 'Bearer error="insufficient_user_authentication"'
PROBLEM = "application/problem+json"
MAIN_CONF = """\
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/forward-auth.conf;
}}
"""


def test_the_readme_shows_the_tested_configuration() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```nginx\n(.*?)```", readme, flags=re.DOTALL)
    assert NGINX_CONF.read_text(encoding="utf-8") in blocks


def _nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found is None:
        unavailable("nginx is not installed (apt-get install nginx)")
    assert found is not None
    built = subprocess.run([found, "-V"], capture_output=True, text=True, check=False).stderr
    if "http_auth_request_module" not in built:
        unavailable(f"{found} was built without the auth_request module")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_config(tmp: Path, api: str) -> Path:
    """examples/gateway.yaml, its API on ``api``, nginx trusted to name the client, and a
    small limit per API key (so that the test can meet it)."""
    text = (EXAMPLES / "gateway.yaml").read_text(encoding="utf-8")
    for old, new in [
        ("policy: policy.yaml", f"policy: {EXAMPLES / 'policy.yaml'}"),
        (f"http://{API}", f"http://{api}"),
        ("per_ip: 600/m}", "per_ip: 600/m, per_api_key: 12/m}"),
        (
            "    default: deny",
            "    forward_auth: {trusted_proxies: [127.0.0.1]}\n    default: deny",
        ),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "piigate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def nginx_config(tmp: Path, ports: dict[str, int]) -> Path:
    text = NGINX_CONF.read_text(encoding="utf-8")
    for address, port in ports.items():
        directive = f"listen {address};" if address == NGINX else f"server {address};"
        assert text.count(directive) == 1, directive
        text = text.replace(address, f"127.0.0.1:{port}")
    (tmp / "forward-auth.conf").write_text(text, encoding="utf-8")
    main = tmp / "nginx.conf"
    main.write_text(MAIN_CONF.format(tmp=tmp), encoding="utf-8")
    return main


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.headers, response.text)
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.mark.slow
def test_nginx_asks_piigate_before_the_api(tmp_path: Path) -> None:
    nginx = _nginx()
    ports = {SERVE: _free_port(), API: _free_port(), NGINX: _free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    env.update(PIIGATE_DATA_DIR=str(tmp_path / "data"), PIIGATE_LOG_FORMAT="json")
    config = gateway_config(tmp_path, f"127.0.0.1:{ports[API]}")
    key = run_piigate(env, "keys", "create", "app").split()[-1]
    api = [sys.executable, "-m", "piigate.demo.customers", "--port", str(ports[API])]
    main = nginx_config(tmp_path, ports)
    base = f"http://127.0.0.1:{ports[NGINX]}"
    nginx_command = [nginx, "-e", "stderr", "-p", str(tmp_path), "-c", str(main)]
    with (
        running([(api, ports[API], tmp_path / "api.log")], env),
        running([(nginx_command, ports[NGINX], tmp_path / "nginx.log")], env),
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client,
    ):
        with serving(env, ports[SERVE], tmp_path / "serve.log", config=config):
            _through_nginx(client, base, key)
        # piigate gone: nothing goes through, and the client is told why.
        gone = problem(client.get("/whoami"), 503)
        assert gone["detail"] == "piigate cannot be reached"


def _through_nginx(client: httpx.Client, base: str, key: str) -> None:
    # Allowed: the API hears who asked from piigate, never from the client.
    spoofed = {"PIIGate-Subject": "mallory", "PIIGate-Level": "aal3"}
    allowed = client.get("/whoami", headers=spoofed)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {"subject": api_key_id(key), "level": None}
    assert allowed.headers["ratelimit"].startswith('"per_api_key";r=')

    # A read the policy would mask: the step-up that unlocks it, body and challenge included.
    masked = client.get("/customers/1")
    body = problem(masked, 401)
    assert masked.headers.get_list("www-authenticate") == [
        f'{STEP_UP}, acr_values="urn:piigate:aal2", max_age=300'
    ]
    assert "ssn" in body["masked"] and body["challenge"]["id"].startswith("chl_")

    deleted = client.delete("/customers/1")  # aal3 for this one request
    assert problem(deleted, 401)["required"]["max_age"] == 0
    assert deleted.headers["www-authenticate"].startswith(STEP_UP)

    assert problem(client.get("/nowhere"), 403)["code"] == "forbidden"  # default: deny
    transfer = client.post("/transfers", json={"amount": 5, "currency": "EUR", "to_account": "x"})
    assert "reverse proxy" in problem(transfer, 403)["detail"]
    ambiguous = client.get("/customers/a%2Fb")
    assert problem(ambiguous, 400)["detail"] == "ambiguous segment in the request path"

    anonymous = httpx.get(f"{base}/whoami")
    assert problem(anonymous, 401)["code"] == "unauthorized"
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="piigate"'

    # The limit per API key: 429 with Retry-After and the problem, as piigate answered it.
    limited = client.get("/whoami")
    for _ in range(30):
        if limited.status_code == 429:
            break
        assert limited.status_code == 200, limited.text
        limited = client.get("/whoami")
    assert problem(limited, 429)["violated-policies"] == ["per_api_key"]
    assert int(limited.headers["retry-after"]) > 0
    assert limited.headers["ratelimit"].startswith('"per_api_key";r=0')
