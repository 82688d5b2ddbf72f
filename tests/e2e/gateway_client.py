"""What the gateway's end-to-end tests do as clients: bearer headers, problem+json answers,
``WWW-Authenticate`` parameters, raw requests on a socket, TOTP step-ups at ``piigate serve``,
and the upstream's records read behind the gateway."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import httpx
import pyotp
from gateway_stack import Stack

__all__ = [
    "PROBLEM",
    "auth_params",
    "bearer",
    "customer",
    "deleted",
    "enroll_totp",
    "problem",
    "raw_exchange",
    "verified_grant",
]

PROBLEM = "application/problem+json"


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **headers}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The problem+json body of ``response``, which must be ``status`` with ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def auth_params(header: str) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate``/``PIIGate-Unlock`` value."""
    return {k: a or b for k, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', header)}


def customer(stack: Stack, cid: str) -> dict[str, Any]:
    """A record as the upstream holds it (read behind the gateway)."""
    answer = httpx.get(f"{stack.upstream}/customers/{cid}")
    assert answer.status_code == 200, answer.text
    record: dict[str, Any] = answer.json()
    return record


def deleted(stack: Stack, cid: str) -> bool:
    return httpx.get(f"{stack.upstream}/customers/{cid}").status_code == 404


def enroll_totp(stack: Stack, token: str) -> pyotp.TOTP:
    """A TOTP factor for the token's subject at ``piigate serve``, confirmed with the code of
    the previous step, so the current and the next are left for step-ups."""
    started = httpx.post(f"{stack.service}/v1/factors/totp", headers=bearer(token))
    assert started.status_code == 201, started.text
    totp = pyotp.TOTP(started.json()["secret"])
    confirm = f"{stack.service}/v1/factors/totp/{started.json()['id']}/confirm"
    code = totp.at(time.time() - 30)
    assert httpx.post(confirm, json={"code": code}, headers=bearer(token)).status_code == 200
    return totp


def verified_grant(stack: Stack, refused: httpx.Response, token: str, totp: pyotp.TOTP) -> str:
    """The grant for the challenge of a 401, verified at its ``verify_url`` with a TOTP code."""
    challenge = problem(refused, 401, "insufficient_user_authentication")["challenge"]
    assert isinstance(challenge, dict)
    verify_url = f"{stack.service}/v1/challenges/{challenge['id']}/verify"
    assert challenge["verify_url"] == verify_url
    proof = {"method": "totp", "code": totp.now()}
    verified = httpx.post(verify_url, json=proof, headers=bearer(token))
    assert verified.status_code == 200, verified.text
    grant: str = verified.json()["grant"]
    return grant


def raw_exchange(port: int, request: bytes) -> bytes:
    """``request`` written as is on a new connection; everything read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received
