"""The server's authentication requests: type ``R``, told apart by their first int32.

A request the gateway does not model (GSS, SSPI) is left to the parser's ``Unknown``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from piigate.gateway.postgres.wire import Reader, cstring, frame, int32

__all__ = [
    "AUTH_DECODERS",
    "Auth",
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationOk",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
]


@dataclass(frozen=True, slots=True)
class AuthenticationOk:
    def encode(self) -> bytes:
        return frame(b"R", int32(0))


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword:
    def encode(self) -> bytes:
        return frame(b"R", int32(3))


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password:
    salt: bytes

    def encode(self) -> bytes:
        return frame(b"R", int32(5) + self.salt)


@dataclass(frozen=True, slots=True)
class AuthenticationSASL:
    mechanisms: tuple[str, ...]

    def encode(self) -> bytes:
        names = b"".join(cstring(name) for name in self.mechanisms)
        return frame(b"R", int32(10) + names + b"\x00")


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue:
    data: bytes

    def encode(self) -> bytes:
        return frame(b"R", int32(11) + self.data)


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal:
    data: bytes

    def encode(self) -> bytes:
        return frame(b"R", int32(12) + self.data)


def _sasl(r: Reader) -> AuthenticationSASL:
    names: list[str] = []
    while name := r.cstring():
        names.append(name)
    r.end()
    return AuthenticationSASL(tuple(names))


def _md5(r: Reader) -> AuthenticationMD5Password:
    salt = r.raw(4)
    r.end()
    return AuthenticationMD5Password(salt)


def _bare(message: AuthenticationOk | AuthenticationCleartextPassword) -> Callable[[Reader], Auth]:
    def decode(r: Reader) -> Auth:
        r.end()
        return message

    return decode


Auth = (
    AuthenticationOk
    | AuthenticationCleartextPassword
    | AuthenticationMD5Password
    | AuthenticationSASL
    | AuthenticationSASLContinue
    | AuthenticationSASLFinal
)
AUTH_DECODERS: dict[int, Callable[[Reader], Auth]] = {
    0: _bare(AuthenticationOk()),
    3: _bare(AuthenticationCleartextPassword()),
    5: _md5,
    10: _sasl,
    11: lambda r: AuthenticationSASLContinue(r.rest()),
    12: lambda r: AuthenticationSASLFinal(r.rest()),
}
