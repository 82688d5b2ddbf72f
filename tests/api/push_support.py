"""A push device for tests: it enrols through its link and signs its requests as the
reference authenticator does (imported by name, like api_support)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from api_support import Node

from piigate.factors.push.protocol import (
    DEVICE_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeviceAlgorithm,
    DevicePrivateKey,
    canonical_request,
    generate_device_key,
    new_nonce,
    public_jwk,
    sign_request,
)

__all__ = ["Device", "complete", "enrol", "signature_headers", "start_enrollment", "token_of"]


@dataclass
class Device:
    """A test device: signs its requests as the reference authenticator does."""

    node: Node
    id: str
    key: DevicePrivateKey

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
        key: DevicePrivateKey | None = None,
        device_id: str | None = None,
    ) -> httpx.Response:
        request = self.node.client.build_request(method, path, json=body)
        headers = signature_headers(
            self.id if device_id is None else device_id,
            key or self.key,
            request,
            int((at or self.node.clock.now()).timestamp()),
        )
        request.headers.update(headers)
        return await self.node.client.send(request)

    async def pending(self, wait: int = 0) -> list[dict[str, Any]]:
        response = await self.call("GET", f"/v1/devices/pending?wait={wait}")
        assert response.status_code == 200, response.text
        pushes: list[dict[str, Any]] = response.json()["pushes"]
        return pushes

    async def answer(
        self, push_id: str, decision: str, number: int | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"decision": decision}
        if number is not None:
            body["number"] = number
        return await self.call("POST", f"/v1/devices/pushes/{push_id}", body)


def signature_headers(
    device_id: str, key: DevicePrivateKey, request: httpx.Request, timestamp: int
) -> dict[str, str]:
    nonce = new_nonce()
    message = canonical_request(
        device_id=device_id,
        method=request.method,
        target=request.url.raw_path.decode(),
        timestamp=timestamp,
        nonce=nonce,
        body=request.content,
    )
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign_request(key, message),
    }
    if device_id:
        headers[DEVICE_ID_HEADER] = device_id
    return headers


async def start_enrollment(client: httpx.AsyncClient, **headers: str) -> dict[str, Any]:
    response = await client.post("/v1/factors/push", json={"label": "phone"}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def token_of(uri: str) -> str:
    query = parse_qs(urlparse(uri).query)
    return query["token"][0]


async def complete(
    node: Node, token: str, *, alg: DeviceAlgorithm = DeviceAlgorithm.ES256
) -> tuple[httpx.Response, DevicePrivateKey]:
    key = generate_device_key(alg)
    body = {"token": token, "public_key": public_jwk(key), "alg": alg.value, "name": "pixel"}
    request = node.client.build_request("POST", "/v1/devices", json=body)
    ts = int(node.clock.now().timestamp())
    request.headers.update(signature_headers("", key, request, ts))
    return await node.client.send(request), key


async def enrol(node: Node, client: httpx.AsyncClient) -> Device:
    started = await start_enrollment(client)
    response, key = await complete(node, token_of(started["enroll_uri"]))
    assert response.status_code == 201, response.text
    return Device(node, response.json()["device_id"], key)
