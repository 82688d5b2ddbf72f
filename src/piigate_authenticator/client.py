"""The HTTP client of the device API: every request signed with the device key.

The signature covers the method, the path and query as sent, a timestamp, a nonce and the body
(:func:`piigate.factors.push.protocol.canonical_request`); the server refuses anything else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from piigate.factors.push.protocol import (
    DEVICE_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DevicePrivateKey,
    canonical_request,
    new_nonce,
    sign_request,
)
from piigate_authenticator.errors import AuthenticatorError

__all__ = ["MAX_WAIT", "DeviceApi"]

# The longest long poll the server holds a request for, in seconds.
MAX_WAIT = 30
_TIMEOUT = 10.0


class DeviceApi:
    """Signed requests to a piigate server's device API, over a synchronous httpx client.

    ``transport`` and ``clock`` (Unix seconds) are for tests; the command line uses the network
    and the system clock.
    """

    def __init__(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = transport
        self.clock = clock

    def request(
        self,
        server: str,
        method: str,
        path: str,
        *,
        key: DevicePrivateKey,
        device_id: str,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One signed request; the JSON answer, or :class:`AuthenticatorError`.

        ``device_id`` is empty while enrolling: the device has no id yet.
        """
        response = self._send(server, method, path, key=key, device_id=device_id, body=body)
        return _answer(server, response)

    def request_if_found(
        self,
        server: str,
        method: str,
        path: str,
        *,
        key: DevicePrivateKey,
        device_id: str,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """As :meth:`request`, but None when the server does not know ``path`` for this device
        (404): the caller tries the next device."""
        response = self._send(server, method, path, key=key, device_id=device_id, body=body)
        return None if response.status_code == 404 else _answer(server, response)

    def _send(
        self,
        server: str,
        method: str,
        path: str,
        *,
        key: DevicePrivateKey,
        device_id: str,
        body: dict[str, Any] | None,
    ) -> httpx.Response:
        # A long poll holds the request up to MAX_WAIT seconds.
        timeout = httpx.Timeout(_TIMEOUT, read=_TIMEOUT + MAX_WAIT)
        with httpx.Client(transport=self.transport, timeout=timeout) as client:
            request = client.build_request(method, server + path, json=body)
            self._sign(request, key=key, device_id=device_id)
            try:
                return client.send(request)
            except httpx.HTTPError as exc:
                raise AuthenticatorError(f"cannot reach {server}: {type(exc).__name__}") from None

    def _sign(self, request: httpx.Request, *, key: DevicePrivateKey, device_id: str) -> None:
        """Add the device headers; the signed target is the path and query exactly as sent."""
        timestamp = int(self.clock())
        nonce = new_nonce()
        message = canonical_request(
            device_id=device_id,
            method=request.method,
            target=request.url.raw_path.decode("ascii"),
            timestamp=timestamp,
            nonce=nonce,
            body=request.content,
        )
        if device_id:
            request.headers[DEVICE_ID_HEADER] = device_id
        request.headers[TIMESTAMP_HEADER] = str(timestamp)
        request.headers[NONCE_HEADER] = nonce
        request.headers[SIGNATURE_HEADER] = sign_request(key, message)


def _answer(server: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful answer; else the server's one-line ``detail``."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not response.is_success:
        problem = answer if isinstance(answer, dict) else {}
        detail, code = problem.get("detail"), problem.get("code")
        raise AuthenticatorError(
            f"{server}: {detail or f'HTTP {response.status_code}'}",
            code=code if isinstance(code, str) else None,
        )
    if not isinstance(answer, dict):
        raise AuthenticatorError(f"{server}: the answer is not a JSON object")
    return answer
