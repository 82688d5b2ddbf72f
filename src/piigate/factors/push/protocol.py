"""Push approval with number matching: the device ("trusted app") protocol, pure.

A device is a key pair — P-256 ECDSA (``ES256``) or Ed25519 (``EdDSA``), the JOSE names of
RFC 7518 §3.4 and RFC 8037 — whose public half the server keeps in the push factor's row. Every
request a device makes is signed with the private half over one canonical string
(:func:`canonical_request`)::

    PIIGATE-DEVICE-V1  a fixed tag, so a signature cannot be lifted from another protocol
    <device id>        the push factor's id (empty while enrolling: there is none yet)
    <METHOD>           upper case
    <path[?query]>     exactly as sent on the wire (percent-encoding untouched)
    <timestamp>        whole Unix seconds, decimal; accepted within ±60 s of the server
    <nonce>            16-64 characters of [A-Za-z0-9_-], never reused within the window
    <body digest>      lower-case hex SHA-256 of the body bytes (of b"" when there is none)

joined by ``\\n`` (no trailing newline), UTF-8. The signature goes base64url-encoded without
padding into ``PIIGate-Signature``: for ES256 the 64 bytes ``r ‖ s`` (as in JWS), for EdDSA the
64-byte Ed25519 signature. An answer to a push is bound by the same signature: its path names
the push and its body says ``decision`` and ``number``, so it cannot be moved to another push,
flipped from deny to approve, or given another number.

Number matching (NIST SP 800-63B-4 §3.1.3.1 / §3.2.9, against MFA fatigue): the step-up page
shows a two-digit number (:func:`new_push_number`) that the device never receives; the user
types it on the device, so a push they did not start cannot be approved blindly.

Nothing here reads the clock or the network: times come in as arguments.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import segno
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "DEVICE_ID_HEADER",
    "ENROLL_SCHEME",
    "NONCE_HEADER",
    "NUMBER_RANGE",
    "SIGNATURE_HEADER",
    "SIGNING_TAG",
    "TIMESTAMP_HEADER",
    "DeviceAlgorithm",
    "DeviceKey",
    "DeviceKeyError",
    "DevicePrivateKey",
    "DeviceSignatureError",
    "EnrollLink",
    "body_digest",
    "canonical_request",
    "enroll_qr_svg",
    "enroll_uri",
    "generate_device_key",
    "load_private_key",
    "new_nonce",
    "new_push_number",
    "numbers_match",
    "parse_enroll_uri",
    "parse_public_key",
    "private_key_pem",
    "public_jwk",
    "sign_request",
    "timestamp_fresh",
    "valid_nonce",
    "verify_signature",
]

SIGNING_TAG = "PIIGATE-DEVICE-V1"
DEVICE_ID_HEADER = "PIIGate-Device-Id"
TIMESTAMP_HEADER = "PIIGate-Timestamp"
NONCE_HEADER = "PIIGate-Nonce"
SIGNATURE_HEADER = "PIIGate-Signature"
# How far a device's clock may be from the server's; a nonce is remembered twice as long.
CLOCK_SKEW_SECONDS = 60
# Two digits the user can read off one screen and type on another without error.
NUMBER_RANGE = range(10, 100)
ENROLL_SCHEME = "piigate-push"

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_P256_BYTES = 32
_MAX_KEY_TEXT = 4096

DevicePrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class DeviceAlgorithm(StrEnum):
    """Signature algorithms a device may use (JOSE names)."""

    ES256 = "ES256"
    EDDSA = "EdDSA"


class DeviceKeyError(ValueError):
    """A public key that cannot be a device key (malformed, wrong curve, wrong algorithm)."""


class DeviceSignatureError(Exception):
    """A device signature that does not verify. Deliberately vague about why."""

    def __init__(self) -> None:
        super().__init__("device signature does not verify")


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A device's public key: its algorithm and its SubjectPublicKeyInfo (DER)."""

    alg: DeviceAlgorithm
    spki: bytes

    def encoded(self) -> str:
        """The SPKI in standard base64, as stored in the factor's data."""
        return base64.b64encode(self.spki).decode("ascii")

    @classmethod
    def decoded(cls, alg: str, spki_b64: str) -> DeviceKey:
        """The key as stored (:meth:`encoded`); raises :class:`DeviceKeyError` when unusable."""
        return parse_public_key(spki_b64, alg)


@dataclass(frozen=True, slots=True)
class EnrollLink:
    """What an enrollment URI carries: the server's public URL and the one-time token."""

    url: str
    token: str


# -- keys ---------------------------------------------------------------------------------------


def _algorithm(alg: str) -> DeviceAlgorithm:
    try:
        return DeviceAlgorithm(alg)
    except ValueError:
        raise DeviceKeyError("alg must be ES256 or EdDSA") from None


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    cleaned = "".join(text.split())
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        if "-" in padded or "_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise DeviceKeyError("the public key is not valid base64") from None


def _from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if "d" in jwk:
        raise DeviceKeyError("the JWK holds a private key; send only the public key")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise DeviceKeyError("the JWK lacks x")
    if kty == "EC" and crv == "P-256":
        y = jwk.get("y")
        if not isinstance(y, str):
            raise DeviceKeyError("the JWK lacks y")
        xb, yb = _b64decode(x), _b64decode(y)
        if len(xb) != _P256_BYTES or len(yb) != _P256_BYTES:
            raise DeviceKeyError("the JWK coordinates are not P-256 sized")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xb + yb)
        except ValueError:
            raise DeviceKeyError("the JWK point is not on P-256") from None
    if kty == "OKP" and crv == "Ed25519":
        try:
            return ed25519.Ed25519PublicKey.from_public_bytes(_b64decode(x))
        except ValueError:
            raise DeviceKeyError("the JWK is not an Ed25519 key") from None
    raise DeviceKeyError("the JWK must be an EC P-256 or OKP Ed25519 key")


def _from_text(text: str) -> PublicKeyTypes:
    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            return serialization.load_pem_public_key(stripped.encode("ascii"))
        return serialization.load_der_public_key(_b64decode(stripped))
    except DeviceKeyError:
        raise
    except (ValueError, TypeError, UnicodeEncodeError):
        raise DeviceKeyError(
            "the public key is not a SubjectPublicKeyInfo (PEM or base64)"
        ) from None


def parse_public_key(value: str | Mapping[str, Any], alg: str) -> DeviceKey:
    """A device's public key from a JWK (RFC 7517) or an SPKI (PEM, or base64 of the DER),
    checked against ``alg``: ES256 needs a P-256 key, EdDSA an Ed25519 key."""
    algorithm = _algorithm(alg)
    if isinstance(value, str):
        if len(value) > _MAX_KEY_TEXT:
            raise DeviceKeyError("the public key is too long")
        key = _from_text(value)
    else:
        key = _from_jwk(value)
    if algorithm is DeviceAlgorithm.ES256:
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise DeviceKeyError("ES256 needs a P-256 public key")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise DeviceKeyError("EdDSA needs an Ed25519 public key")
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DeviceKey(algorithm, spki)


def generate_device_key(alg: DeviceAlgorithm) -> DevicePrivateKey:
    """A new device key pair (the reference authenticator's, and tests')."""
    if alg is DeviceAlgorithm.ES256:
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: DevicePrivateKey) -> dict[str, str]:
    """The public half of ``key`` as a JWK, for ``POST /v1/devices``."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(_P256_BYTES, "big")),
        "y": _b64url(numbers.y.to_bytes(_P256_BYTES, "big")),
    }


def private_key_pem(key: DevicePrivateKey) -> str:
    """PKCS#8 PEM, unencrypted: the authenticator's key file is protected by its mode (0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_key(pem: str) -> DevicePrivateKey:
    """A key saved with :func:`private_key_pem`; raises :class:`DeviceKeyError` otherwise."""
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise DeviceKeyError("the private key is unreadable") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise DeviceKeyError("the private key is neither P-256 nor Ed25519")


# -- requests -----------------------------------------------------------------------------------


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    *,
    device_id: str,
    method: str,
    target: str,
    timestamp: int,
    nonce: str,
    body: bytes,
) -> bytes:
    """The string a device signs (see the module docstring for its exact form)."""
    lines = (
        SIGNING_TAG,
        device_id,
        method.upper(),
        target,
        str(int(timestamp)),
        nonce,
        body_digest(body),
    )
    return "\n".join(lines).encode("utf-8")


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits


def valid_nonce(nonce: str) -> bool:
    return _NONCE.fullmatch(nonce) is not None


def timestamp_fresh(text: str, *, now: datetime, skew: int = CLOCK_SKEW_SECONDS) -> bool:
    """Whether ``text`` is whole Unix seconds within ``skew`` of ``now`` (either way)."""
    if _TIMESTAMP.fullmatch(text) is None:
        return False
    return abs(int(text) - now.timestamp()) <= skew


def sign_request(key: DevicePrivateKey, message: bytes) -> str:
    """The ``PIIGate-Signature`` value for ``message`` (base64url, no padding)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _b64url(key.sign(message))
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return _b64url(r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big"))


def verify_signature(key: DeviceKey, message: bytes, *, signature: str) -> None:
    """Check a device's signature over ``message``; raises :class:`DeviceSignatureError`."""
    try:
        raw = _b64decode(signature) if len(signature) <= 128 else b""
    except DeviceKeyError:
        raise DeviceSignatureError from None
    if len(raw) != 2 * _P256_BYTES:
        raise DeviceSignatureError
    try:
        public = serialization.load_der_public_key(key.spki)
        if key.alg is DeviceAlgorithm.ES256 and isinstance(public, ec.EllipticCurvePublicKey):
            r = int.from_bytes(raw[:_P256_BYTES], "big")
            s = int.from_bytes(raw[_P256_BYTES:], "big")
            public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
            return
        if key.alg is DeviceAlgorithm.EDDSA and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(raw, message)
            return
    except (InvalidSignature, ValueError):
        pass
    raise DeviceSignatureError


# -- numbers and enrollment links ---------------------------------------------------------------


def new_push_number() -> int:
    """A uniformly random number in :data:`NUMBER_RANGE` (10-99), from ``secrets``."""
    return NUMBER_RANGE.start + secrets.randbelow(len(NUMBER_RANGE))


def numbers_match(expected: int, given: int | None) -> bool:
    """Whether the number typed on the device is the one the page shows (constant time)."""
    if given is None:
        return False
    return hmac.compare_digest(str(expected).encode(), str(given).encode())


def enroll_uri(public_url: str, token: str) -> str:
    """``piigate-push://enroll?url=<public url>&token=<one-time token>``."""
    return f"{ENROLL_SCHEME}://enroll?" + urlencode({"url": public_url.rstrip("/"), "token": token})


def parse_enroll_uri(uri: str) -> EnrollLink:
    """The server URL and token of an enrollment URI; ``ValueError`` naming what is wrong."""
    parts = urlsplit(uri.strip())
    if parts.scheme != ENROLL_SCHEME or parts.netloc != "enroll":
        raise ValueError(f"not a {ENROLL_SCHEME}://enroll URI")
    query = parse_qs(parts.query, strict_parsing=False)
    urls, tokens = query.get("url", []), query.get("token", [])
    if len(urls) != 1 or len(tokens) != 1:
        raise ValueError("the enrollment URI needs exactly one url and one token")
    server = urlsplit(urls[0])
    if server.scheme not in ("http", "https") or not server.netloc:
        raise ValueError("the enrollment URI's url is not an http(s) URL")
    return EnrollLink(urls[0].rstrip("/"), tokens[0])


def enroll_qr_svg(uri: str) -> str:
    """The enrollment URI as a QR code (standalone SVG, as for TOTP)."""
    qr = segno.make(uri, error="m", micro=False)
    out = io.BytesIO()
    qr.save(out, kind="svg", xmldecl=False, scale=4, border=4, title="push enrollment")
    return out.getvalue().decode("utf-8")
