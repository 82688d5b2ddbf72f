"""What the device does: enrol with a link, list the pushes waiting, approve or deny one.

Approving takes the number the step-up page shows (number matching), so a push approved
without looking at the page fails. What a push shows the user names who asks, for what, on
which record and, for a transfer, how much to whom; never the number.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from piigate.factors.push.protocol import (
    DeviceAlgorithm,
    generate_device_key,
    parse_enroll_uri,
    private_key_pem,
    public_jwk,
)
from piigate_authenticator.client import DeviceApi
from piigate_authenticator.errors import AuthenticatorError
from piigate_authenticator.keyfile import DeviceEntry, KeyFile

__all__ = ["Authenticator", "describe_push", "is_push_id"]

# The server's vague refusal of a proof: for an approval of an open push, a wrong number.
_REFUSED = "factor_rejected"
# A push id goes into the request path: only the characters ids are made of.
_PUSH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_push_id(value: str) -> bool:
    """Whether ``value`` can be a push id (and so is safe in a request path)."""
    return _PUSH_ID.fullmatch(value) is not None


class Authenticator:
    """The device side of the push protocol: the key file, and the server each key belongs to.

    ``transport`` and ``clock`` (Unix seconds) are for tests; the command line uses the network
    and the system clock.
    """

    def __init__(
        self,
        keys: KeyFile,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.api = DeviceApi(transport=transport, clock=clock)

    def enroll(self, uri: str, *, name: str, alg: DeviceAlgorithm) -> DeviceEntry:
        """Complete the enrollment of ``uri`` with a new key pair; save the key."""
        try:
            link = parse_enroll_uri(uri)
        except ValueError as exc:
            raise AuthenticatorError(str(exc)) from None
        devices = self.keys.load()  # refuse a bad key file before the one-time token is spent
        key = generate_device_key(alg)
        body = {"token": link.token, "public_key": public_jwk(key), "alg": alg.value, "name": name}
        answer = self.api.request(link.url, "POST", "/v1/devices", key=key, device_id="", body=body)
        entry = DeviceEntry(
            server=link.url,
            device_id=str(answer["device_id"]),
            alg=alg.value,
            name=name,
            subject=str(answer.get("subject", "")),
            private_key=private_key_pem(key),
        )
        try:
            self.keys.save([*devices, entry])
        except AuthenticatorError as exc:
            raise AuthenticatorError(
                f"enrolled as {entry.device_id} but the key could not be saved ({exc}); "
                "remove that factor and enrol again"
            ) from None
        return entry

    def pending(self, *, wait: int = 0) -> list[tuple[DeviceEntry, dict[str, Any]]]:
        """The pushes waiting for every enrolled device (each waits up to ``wait`` seconds)."""
        found: list[tuple[DeviceEntry, dict[str, Any]]] = []
        for entry in self._devices():
            answer = self.api.request(
                entry.server,
                "GET",
                f"/v1/devices/pending?wait={wait}",
                key=entry.key(),
                device_id=entry.device_id,
            )
            pushes = answer.get("pushes", [])
            found.extend((entry, push) for push in pushes if isinstance(push, dict))
        return found

    def answer(self, push_id: str, *, approve: bool, number: int | None = None) -> str:
        """Answer ``push_id`` from the device it was sent to; the challenge's new state.

        The server says when the push was already answered, has expired or is closed; a
        refused approval of an open push means the number did not match (the server counts it
        against the device; it never says which number was right).
        """
        body: dict[str, Any] = {"decision": "approve" if approve else "deny"}
        if approve:
            body["number"] = number
        path = f"/v1/devices/pushes/{push_id}"
        for entry in self._devices():
            try:
                answer = self.api.request_if_found(
                    entry.server,
                    "POST",
                    path,
                    key=entry.key(),
                    device_id=entry.device_id,
                    body=body,
                )
            except AuthenticatorError as exc:
                if approve and exc.code == _REFUSED:
                    raise AuthenticatorError(
                        f"{entry.server}: not approved: the number did not match the one on "
                        "the step-up page",
                        code=exc.code,
                    ) from None
                raise
            if answer is not None:
                return str(answer.get("state", ""))
        raise AuthenticatorError(f"no enrolled device has a push {push_id}")

    def _devices(self) -> list[DeviceEntry]:
        devices = self.keys.load()
        if not devices:
            raise AuthenticatorError(
                f"no device enrolled in {self.keys.path}; run: piigate authenticator enroll URI"
            )
        return devices


def describe_push(push: dict[str, Any]) -> str:
    """One line per push: id, who, what, on which record, how much to whom."""
    resource = push.get("resource") or {}
    target = "/".join(str(part) for part in (resource.get("type"), resource.get("id")) if part)
    parts = [
        str(push.get("id")),
        f"for {push.get('subject')}",
        str(push.get("action")),
        target or "-",
        "pii: " + (", ".join(push.get("pii") or []) or "-"),
    ]
    txn = push.get("transaction")
    if isinstance(txn, dict):
        amount = " ".join(str(v) for v in (txn.get("amount"), txn.get("currency")) if v)
        parts.append(f"{amount} to {txn.get('payee') or '?'}")
    context = push.get("context") or {}
    if context.get("requested_by"):
        parts.append(f"asked by {context['requested_by']}")
    return "  ".join(parts)
