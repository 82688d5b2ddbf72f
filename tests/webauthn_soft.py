"""A software WebAuthn authenticator for the tests (imported by name: ``tests/`` is on sys.path).

It does what a browser plus a CTAP2 authenticator do, byte for byte: an ES256 (P-256) key,
``none`` attestation with a CBOR attestationObject, authenticatorData (rpIdHash, flags
UP/UV/BE/AT, a big-endian counter, attested credential data with a COSE key), clientDataJSON,
and assertions signed over ``authenticatorData ‖ SHA-256(clientDataJSON)``. Every field a test
wants to get wrong (origin, RP id, UV flag, counter, challenge) can be overridden per call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One authenticator holding one credential (created by :meth:`create`)."""

    origin: str
    user_verifying: bool = True
    backup_eligible: bool = False
    counter: int = 0
    aaguid: bytes = bytes(range(16))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    rp_id: str | None = None
    user_handle: bytes | None = None

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        # RFC 9053 §7.1.1: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y.
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _flags(self, uv: bool | None, extra: int = 0) -> int:
        flags = UP | extra
        if self.user_verifying if uv is None else uv:
            flags |= UV
        if self.backup_eligible:
            flags |= BE
        return flags

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str, **extra: Any) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False, **extra}
        ).encode()

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        uv: bool | None = None,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.create({publicKey: options})`` → RegistrationResponseJSON."""
        self.rp_id = options["rp"]["id"]
        self.user_handle = unb64u(options["user"]["id"])
        rp_hash = hashlib.sha256((rp_id or options["rp"]["id"]).encode()).digest()
        attested = (
            self.aaguid
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + self.cose_key()
        )
        auth_data = (
            rp_hash + bytes([self._flags(uv, AT)]) + self.counter.to_bytes(4, "big") + attested
        )
        client_data = self._client_data(
            "webauthn.create", challenge or options["challenge"], origin or self.origin
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        cid = b64u(self.credential_id)
        return {
            "id": cid,
            "rawId": cid,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64u(client_data),
                "attestationObject": b64u(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        uv: bool | None = None,
        counter: int | None = None,
        challenge: str | None = None,
        client_data_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.get({publicKey: options})`` → AuthenticationResponseJSON.
        The counter goes up by one unless ``counter`` says what to report."""
        if counter is None:
            self.counter += 1
            counter = self.counter
        rp_hash = hashlib.sha256((rp_id or options["rpId"]).encode()).digest()
        auth_data = rp_hash + bytes([self._flags(uv)]) + counter.to_bytes(4, "big")
        client_data = self._client_data(
            "webauthn.get",
            challenge or options["challenge"],
            origin or self.origin,
            **(client_data_extra or {}),
        )
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        cid = b64u(self.credential_id)
        response: dict[str, Any] = {
            "clientDataJSON": b64u(client_data),
            "authenticatorData": b64u(auth_data),
            "signature": b64u(signature),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64u(self.user_handle)
        return {
            "id": cid,
            "rawId": cid,
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
