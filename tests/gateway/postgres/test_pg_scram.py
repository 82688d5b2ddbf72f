"""The SCRAM-SHA-256 server: RFC 7677's exchange, and every way a client-side message can fail."""

from __future__ import annotations

import base64

import pytest

from piigate.gateway.postgres.scram import ScramError, ScramServer, ScramVerifier, new_server_nonce

SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
NONCE = "rOprNGfwEbeRWgbNEkqO" + SERVER_NONCE
PROOF = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
CLIENT_FINAL = f"c=biws,r={NONCE},p={PROOF}".encode()


def _server(password: str = "pencil") -> ScramServer:
    verifier = ScramVerifier.from_password(password, salt=SALT, iterations=4096)
    return ScramServer(verifier, server_nonce=SERVER_NONCE)


def test_rfc7677_exchange() -> None:
    server = _server()
    server_first = server.first(CLIENT_FIRST)
    assert server_first == f"r={NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".encode()
    assert server.final(CLIENT_FINAL) == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert server.done


def test_a_wrong_password_fails_the_proof() -> None:
    server = _server("pencil2")
    server.first(CLIENT_FIRST)
    with pytest.raises(ScramError, match="wrong proof"):
        server.final(CLIENT_FINAL)
    assert not server.done
    with pytest.raises(ScramError, match="out of order"):
        server.final(CLIENT_FINAL)


@pytest.mark.parametrize(
    ("client_first", "reason"),
    [
        (b"p=tls-server-end-point,,n=user,r=abc", "channel binding is not supported"),
        (b"n,a=admin,n=user,r=abc", "authorization identity"),
        (b"x,,n=user,r=abc", "malformed client-first"),
        (b"n,,r=abc", "malformed client-first"),
        (b"n,,n=user,r=", "malformed client-first"),
        (b"n,,m=ext,n=user,r=abc", "malformed client-first"),
        (b"n,,n=user,r=abc,m=ext", "mandatory SCRAM extensions"),
        (b"n,,n=user,r=\xff", "not UTF-8"),
        ("n,,n=user,r=é".encode(), "malformed client nonce"),
        (b"n,,n=user,r=a b", "malformed client nonce"),
        (b"n", "malformed client-first"),
    ],
)
def test_refused_client_first_messages(client_first: bytes, reason: str) -> None:
    with pytest.raises(ScramError, match=reason):
        _server().first(client_first)


@pytest.mark.parametrize(
    ("client_final", "reason"),
    [
        (f"c=biws,r={NONCE}".encode(), "without a proof"),
        (f"c=eSws,r={NONCE},p={PROOF}".encode(), "channel binding does not match"),
        (f"c=biws,r={NONCE}x,p={PROOF}".encode(), "nonce does not match"),
        (f"r={NONCE},c=biws,p={PROOF}".encode(), "malformed client-final"),
        (f"c=biws,r={NONCE},p=!!".encode(), "proof is not base64"),
        (f"c=biws,r={NONCE},p=AAAA".encode(), "wrong proof"),
    ],
)
def test_refused_client_final_messages(client_final: bytes, reason: str) -> None:
    server = _server()
    server.first(CLIENT_FIRST)
    with pytest.raises(ScramError, match=reason):
        server.final(client_final)


def test_no_final_before_first() -> None:
    with pytest.raises(ScramError, match="out of order"):
        _server().final(CLIENT_FINAL)


def test_the_verifier_in_postgresqls_format() -> None:
    verifier = ScramVerifier.from_password("pencil", salt=SALT, iterations=4096)
    assert ScramVerifier.parse(str(verifier)) == verifier
    assert str(verifier).startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    for bad in ("md5abc", "SCRAM-SHA-256$0:AA==$AA==:AA==", "SCRAM-SHA-256$x:y$z"):
        with pytest.raises(ValueError, match="verifier"):
            ScramVerifier.parse(bad)


def test_server_nonces() -> None:
    assert new_server_nonce(lambda n: b"\xff" * n) == base64.b64encode(b"\xff" * 18).decode()
    assert new_server_nonce() != new_server_nonce()
    verifier = ScramVerifier.from_password("x", salt=b"s", iterations=1)
    with pytest.raises(ValueError, match="nonce"):
        ScramServer(verifier, server_nonce="a,b")
    with pytest.raises(ValueError, match="nonce"):
        ScramServer(verifier, server_nonce="é")
