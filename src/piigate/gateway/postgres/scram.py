"""The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without I/O.

No channel binding: a client-first message must start ``n,,`` (or ``y,,``: the client could bind
but the server offers no ``-PLUS`` mechanism); ``p=`` is refused. As PostgreSQL, the user name in
the client's messages is ignored (the startup packet names the user). The password is used as its
UTF-8 bytes without SASLprep: an ASCII password (every piigate token) is the same either way, and
another one that libpq would normalise only fails to authenticate.

``ScramServer`` is one exchange: ``first`` answers the client-first message, ``final`` verifies the
client-final message and answers with the server signature, or raises ``ScramError`` (with a
reason fit for a log line: it never quotes the client's message). Proofs are compared in constant
time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MECHANISM", "ScramError", "ScramServer", "ScramVerifier", "new_server_nonce"]

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
_MAX_ITERATIONS = 1_000_000


class ScramError(ValueError):
    """The exchange failed: a malformed message, channel binding asked, or a wrong proof."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise ScramError(f"{what} is not base64") from error


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What the server keeps of a password: salt, iterations, StoredKey and ServerKey."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(
        cls, password: str, *, salt: bytes, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramVerifier:
        if not 1 <= iterations <= _MAX_ITERATIONS:
            raise ValueError("iterations out of range")
        salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        return cls(
            salt, iterations, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")
        )

    @classmethod
    def parse(cls, text: str) -> ScramVerifier:
        """PostgreSQL's ``rolpassword``: ``SCRAM-SHA-256$ITER:SALT$STOREDKEY:SERVERKEY``."""
        try:
            mechanism, params, keys = text.split("$")
            iterations, salt = params.split(":")
            stored, server = keys.split(":")
            count = int(iterations)
        except ValueError as error:
            raise ValueError("not a SCRAM-SHA-256 verifier") from error
        if mechanism != MECHANISM or not 1 <= count <= _MAX_ITERATIONS:
            raise ValueError("not a SCRAM-SHA-256 verifier")
        stored_key, server_key = _unb64(stored, "StoredKey"), _unb64(server, "ServerKey")
        if len(stored_key) != 32 or len(server_key) != 32:
            raise ValueError("not a SCRAM-SHA-256 verifier")
        return cls(_unb64(salt, "salt"), count, stored_key, server_key)

    def __str__(self) -> str:
        return (
            f"{MECHANISM}${self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )


def new_server_nonce(random: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """18 random bytes in base64: printable, without ``,``, as the RFC asks."""
    return _b64(random(18))


def _attributes(text: str, what: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        if len(item) < 2 or item[1] != "=" or not item[0].isalpha():
            raise ScramError(f"malformed {what} message")
        pairs.append((item[0], item[2:]))
    return pairs


class ScramServer:
    """One SCRAM-SHA-256 exchange, server side: ``first`` then ``final``, once each."""

    def __init__(self, verifier: ScramVerifier, *, server_nonce: str) -> None:
        if not _is_nonce(server_nonce):
            raise ValueError("a server nonce is printable ASCII and holds no comma")
        self._verifier = verifier
        self._server_nonce = server_nonce
        self._nonce = ""
        self._gs2_header = ""
        self._auth_prefix = ""
        self._state = "first"

    def first(self, client_first: bytes) -> bytes:
        """The client-first message → the server-first message (nonce, salt, iterations)."""
        self._advance("first")
        text = _text(client_first, "client-first")
        gs2, _, bare = _split_gs2(text)
        attributes = _attributes(bare, "client-first")
        if [key for key, _ in attributes[:2]] != ["n", "r"] or not attributes[1][1]:
            raise ScramError("malformed client-first message")
        if any(key == "m" for key, _ in attributes):
            raise ScramError("mandatory SCRAM extensions are not supported")
        client_nonce = attributes[1][1]
        if not _is_nonce(client_nonce):
            raise ScramError("malformed client nonce")
        self._gs2_header = gs2
        self._nonce = client_nonce + self._server_nonce
        server_first = (
            f"r={self._nonce},s={_b64(self._verifier.salt)},i={self._verifier.iterations}"
        )
        self._auth_prefix = f"{bare},{server_first},"
        self._state = "final"
        return server_first.encode("ascii")

    def final(self, client_final: bytes) -> bytes:
        """The client-final message → the server-final message, once the proof is right."""
        self._advance("final")
        text = _text(client_final, "client-final")
        without_proof, sep, proof_text = text.rpartition(",p=")
        if not sep:
            raise ScramError("client-final message without a proof")
        attributes = _attributes(without_proof, "client-final")
        if [key for key, _ in attributes[:2]] != ["c", "r"]:
            raise ScramError("malformed client-final message")
        binding = _unb64(attributes[0][1], "channel binding")
        if not hmac.compare_digest(binding, self._gs2_header.encode("utf-8")):
            raise ScramError("channel binding does not match the client-first message")
        if not hmac.compare_digest(attributes[1][1].encode("utf-8"), self._nonce.encode("utf-8")):
            raise ScramError("nonce does not match")
        proof = _unb64(proof_text, "proof")
        auth_message = (self._auth_prefix + without_proof).encode("utf-8")
        signature = _hmac(self._verifier.stored_key, auth_message)
        if len(proof) != len(signature):
            raise ScramError("wrong proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self._verifier.stored_key):
            raise ScramError("wrong proof")
        self._state = "done"
        return b"v=" + _b64(_hmac(self._verifier.server_key, auth_message)).encode("ascii")

    def _advance(self, expected: str) -> None:
        ok = self._state == expected
        self._state = "failed"  # until this step succeeds: a failed exchange stays failed
        if not ok:
            raise ScramError("SCRAM messages out of order")

    @property
    def done(self) -> bool:
        return self._state == "done"


def _is_nonce(text: str) -> bool:
    """RFC 5802's ``printable``: visible ASCII but ``,``."""
    return bool(text) and all("!" <= c <= "~" and c != "," for c in text)


def _text(message: bytes, what: str) -> str:
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ScramError(f"{what} message is not UTF-8") from error


def _split_gs2(text: str) -> tuple[str, str, str]:
    """``n,,bare`` → (``n,,``, authzid, bare); channel binding (``p=``) and authzid refused."""
    flag, sep, rest = text.partition(",")
    authzid, sep2, bare = rest.partition(",")
    if not sep or not sep2:
        raise ScramError("malformed client-first message")
    if flag.startswith("p="):
        raise ScramError("channel binding is not supported")
    if flag not in ("n", "y"):
        raise ScramError("malformed client-first message")
    if authzid:
        raise ScramError("an authorization identity is not supported")
    return f"{flag},,", authzid, bare
