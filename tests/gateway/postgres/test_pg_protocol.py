"""The wire protocol codec: every message round-trips byte for byte, any fragmentation parses
alike, and malformed input is a ProtocolViolation that never quotes the bytes it refused."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.gateway.postgres import auth
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.messages import CopyData, CopyDone, Unknown
from piigate.gateway.postgres.protocol import (
    AuthKind,
    BackendParser,
    FrontendParser,
    ProtocolViolation,
)
from piigate.gateway.postgres.wire import Reader, frame, int16, int32

SSN = b"078-05-1120"

STARTUP = fe.StartupMessage((("user", "alice"), ("database", "test"), ("application_name", "é")))
FRONTEND: list[fe.FrontendMessage] = [
    fe.Query("SELECT 1; SELECT 'x'"),
    fe.Query(""),
    fe.Parse("s1", "SELECT $1::int, $2", (23, 0)),
    fe.Parse("", "SELECT 1"),
    fe.Bind("p1", "s1", (1, 0), (b"\x00\x00\x00\x07", None, b""), (1,)),
    fe.Bind("", "", (), (), ()),
    fe.Describe("S", "s1"),
    fe.Describe("P", ""),
    fe.Execute("p1", 100),
    fe.Sync(),
    fe.Flush(),
    fe.Close("P", "p1"),
    fe.Close("S", "s1"),
    CopyData(b"1\talice\n"),
    CopyDone(),
    fe.CopyFail("stopped"),
    Unknown(b"F", b"\x00\x01\x02"),
    fe.Terminate(),
]
BACKEND: list[be.BackendMessage] = [
    auth.AuthenticationOk(),
    auth.AuthenticationCleartextPassword(),
    auth.AuthenticationMD5Password(b"salt"),
    auth.AuthenticationSASL(("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")),
    auth.AuthenticationSASLContinue(b"r=abc,s=c2FsdA==,i=4096"),
    auth.AuthenticationSASLFinal(b"v=c2ln"),
    be.ParameterStatus("client_encoding", "UTF8"),
    be.BackendKeyData(4242, b"\x01\x02\x03\x04"),
    be.ReadyForQuery("I"),
    be.RowDescription(
        (
            be.FieldDescription("ssn", 16384, 2, 25, -1, -1, 0),
            be.FieldDescription("n", 0, 0, 23, 4, -1, 1),
        )
    ),
    be.DataRow((SSN, None, b"")),
    be.DataRow(()),
    be.CommandComplete("SELECT 1"),
    be.EmptyQueryResponse(),
    be.ErrorResponse((("S", "ERROR"), ("C", "23505"), ("M", "duplicate"), ("D", "Key (ssn)"))),
    be.NoticeResponse((("S", "NOTICE"), ("M", "hi"))),
    be.ParseComplete(),
    be.BindComplete(),
    be.CloseComplete(),
    be.NoData(),
    be.ParameterDescription((23, 25)),
    be.PortalSuspended(),
    be.CopyInResponse(0, (0, 0)),
    be.CopyOutResponse(1, (1,)),
    be.CopyBothResponse(0, ()),
    be.NotificationResponse(77, "chan", "payload"),
    CopyData(b"row\n"),
    CopyDone(),
    Unknown(b"v", int32(0) + int32(0)),
    Unknown(b"R", int32(7)),  # AuthenticationGSS: not modelled, passed on unchanged
]


def _frontend(data: bytes, *, started: bool = True) -> list[fe.FrontendMessage]:
    parser = FrontendParser()
    if started:
        parser.feed(STARTUP.encode())
    return parser.feed(data)


@pytest.mark.parametrize("message", FRONTEND, ids=lambda m: type(m).__name__)
def test_frontend_messages_round_trip(message: fe.FrontendMessage) -> None:
    data = message.encode()
    [parsed] = _frontend(data)
    assert parsed == message
    assert parsed.encode() == data


@pytest.mark.parametrize("message", BACKEND, ids=lambda m: type(m).__name__)
def test_backend_messages_round_trip(message: be.BackendMessage) -> None:
    data = message.encode()
    [parsed] = BackendParser().feed(data)
    assert parsed == message
    assert parsed.encode() == data


@pytest.mark.parametrize(
    "message",
    [STARTUP, fe.SSLRequest(), fe.GSSENCRequest(), fe.CancelRequest(9, b"\x00\x01\x02\x03")],
    ids=lambda m: type(m).__name__,
)
def test_startup_packets_round_trip(message: fe.FrontendMessage) -> None:
    [parsed] = FrontendParser().feed(message.encode())
    assert parsed == message
    assert parsed.encode() == message.encode()


def test_the_startup_phase_ends_with_the_startup_message() -> None:
    parser = FrontendParser()
    assert parser.feed(fe.SSLRequest().encode()) == [fe.SSLRequest()]
    assert not parser.started
    stream = STARTUP.encode() + fe.Query("SELECT 1").encode()
    assert parser.feed(stream) == [STARTUP, fe.Query("SELECT 1")]
    assert parser.started
    assert STARTUP.get("user") == "alice"
    assert STARTUP.get("password") is None


def test_password_messages_follow_the_servers_request() -> None:
    parser = FrontendParser()
    parser.feed(STARTUP.encode())
    first = fe.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc")
    parser.expect_auth(AuthKind.SASL_INITIAL)
    assert parser.feed(first.encode()) == [first]
    parser.expect_auth(AuthKind.SASL)
    assert parser.feed(fe.SASLResponse(b"c=biws").encode()) == [fe.SASLResponse(b"c=biws")]
    parser.expect_auth(AuthKind.PASSWORD)
    assert parser.feed(fe.PasswordMessage("token").encode()) == [fe.PasswordMessage("token")]
    empty = fe.SASLInitialResponse("SCRAM-SHA-256", None)
    parser.expect_auth(AuthKind.SASL_INITIAL)
    assert parser.feed(empty.encode()) == [empty]


def test_the_one_byte_answers_to_encryption_requests() -> None:
    parser = BackendParser()
    parser.expect_ssl_answer()
    assert parser.feed(b"N") == [be.SSLAnswer(False)]
    ready = be.ReadyForQuery("I").encode()
    assert parser.feed(ready) == [be.ReadyForQuery("I")]
    parser.expect_ssl_answer()
    assert parser.feed(b"S") == [be.SSLAnswer(True)]
    assert be.SSLAnswer(True).encode() == b"S"
    # An old server answers with an error instead: parsed as one.
    parser.expect_ssl_answer()
    error = be.ErrorResponse((("S", "FATAL"),))
    assert parser.feed(error.encode()) == [error]
    # Without the request, `N` is a NoticeResponse's type.
    notice = be.NoticeResponse((("M", "x"),))
    assert BackendParser().feed(notice.encode()) == [notice]


def test_text_that_is_not_utf8_round_trips() -> None:
    data = frame(b"Q", b"SELECT '\xff\xfe'\x00")
    [parsed] = _frontend(data)
    assert isinstance(parsed, fe.Query)
    assert parsed.encode() == data


def test_error_fields_by_code() -> None:
    error = BACKEND[14]
    assert isinstance(error, be.ErrorResponse)
    assert error.get("C") == "23505"
    assert error.get("H") is None


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.lists(st.integers(min_value=0), max_size=40))
def test_any_fragmentation_yields_the_same_frontend_messages(cuts: list[int]) -> None:
    stream = STARTUP.encode() + b"".join(m.encode() for m in FRONTEND)
    parser = FrontendParser()
    messages = [m for chunk in _splits(stream, cuts) for m in parser.feed(chunk)]
    assert messages == [STARTUP, *FRONTEND]


@given(st.lists(st.integers(min_value=0), max_size=40))
def test_each_frontend_message_comes_with_the_bytes_it_came_in(cuts: list[int]) -> None:
    # What a relay forwards in place of the message's encoding.
    stream = STARTUP.encode() + b"".join(m.encode() for m in FRONTEND)
    parser = FrontendParser()
    framed = [pair for chunk in _splits(stream, cuts) for pair in parser.feed_framed(chunk)]
    assert [m for m, _ in framed] == [STARTUP, *FRONTEND]
    assert [raw for _, raw in framed] == [m.encode() for m in [STARTUP, *FRONTEND]]


def test_a_message_sent_again_as_it_was_reads_the_same() -> None:
    parser = FrontendParser()
    parser.feed(STARTUP.encode())
    twice = b"".join(m.encode() for m in FRONTEND) * 2
    assert parser.feed(twice) == FRONTEND * 2  # decoded once, kept by its bytes, or anew
    assert parser.feed(fe.Execute("p1", 5).encode()) == [fe.Execute("p1", 5)]


@given(st.lists(st.integers(min_value=0), max_size=40))
def test_any_fragmentation_yields_the_same_backend_messages(cuts: list[int]) -> None:
    stream = b"".join(m.encode() for m in BACKEND)
    parser = BackendParser()
    messages = [m for chunk in _splits(stream, cuts) for m in parser.feed(chunk)]
    assert messages == BACKEND


@given(st.lists(st.one_of(st.none(), st.binary(max_size=20)), max_size=20))
def test_data_rows_round_trip(values: list[bytes | None]) -> None:
    data = be.DataRow(tuple(values)).encode()
    [parsed] = BackendParser().feed(data)
    assert parsed == be.DataRow(tuple(values))
    assert parsed.encode() == data


@given(st.binary(max_size=64).filter(lambda b: b"\x00" not in b))
def test_any_query_bytes_round_trip(sql: bytes) -> None:
    data = frame(b"Q", sql + b"\x00")
    [parsed] = _frontend(data)
    assert parsed.encode() == data


def _violation(parser: FrontendParser | BackendParser, data: bytes) -> str:
    with pytest.raises(ProtocolViolation) as caught:
        parser.feed(data)
    text = str(caught.value)
    assert SSN.decode() not in text
    return text


def _started() -> FrontendParser:
    parser = FrontendParser()
    parser.feed(STARTUP.encode())
    return parser


MALFORMED = {
    "length below 4": b"Q" + int32(3),
    "negative length": b"D" + int32(-5),
    "truncated Bind": frame(b"B", b"\x00s\x00" + int16(0) + int16(1) + int32(40) + SSN),
    "trailing bytes": frame(b"Q", SSN + b"\x00" + SSN),
    "unterminated": frame(b"Q", SSN),
    "negative count": frame(b"P", b"\x00" + SSN + b"\x00" + int16(-1)),
    "bad Describe kind": frame(b"D", b"X" + SSN + b"\x00"),
    "data in Sync": frame(b"S", SSN),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_frontend_messages_are_refused_without_echo(data: bytes) -> None:
    parser = _started()
    assert "message" in _violation(parser, data)
    # The parser stays broken: a connection that broke the protocol is closed.
    assert "already broke" in _violation(parser, fe.Sync().encode())


def test_malformed_backend_messages_are_refused_without_echo() -> None:
    negative = frame(b"D", int16(2) + int32(len(SSN)) + SSN + int32(-2))
    assert "negative value length" in _violation(BackendParser(), negative)
    short_auth = frame(b"R", b"\x00")
    assert "Authentication" in _violation(BackendParser(), short_auth)
    bad_sasl = frame(b"R", int32(10) + SSN)
    assert "Authentication" in _violation(BackendParser(), bad_sasl)


def test_messages_over_the_size_limit_are_refused_before_they_arrive() -> None:
    parser = BackendParser(max_message_size=1024)
    text = _violation(parser, b"D" + int32(1 << 20))
    assert text == "message of 1048576 bytes exceeds the limit of 1024"
    assert BackendParser(max_message_size=1024).feed(be.DataRow((b"x" * 900,)).encode())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (int32(4) + SSN, "startup packet length 4 is out of range"),
        (int32(100_000), "startup packet length 100000 is out of range"),
        (int32(8) + int32(2 << 16), "unsupported protocol version 2.0"),
        (int32(15) + int32(80877102) + int32(1) + b"\x00\x00\x00", "bad cancel key"),
        (int32(14) + int32(3 << 16) + b"a\x00b\x00\x00\x00", "trailing bytes"),
    ],
)
def test_malformed_startup_packets(data: bytes, expected: str) -> None:
    assert expected in _violation(FrontendParser(), data)


def test_nothing_may_follow_a_cancel_request() -> None:
    parser = FrontendParser()
    cancel = fe.CancelRequest(1, b"abcd")
    assert parser.feed(cancel.encode()) == [cancel]
    _violation(parser, STARTUP.encode())
    text = _violation(FrontendParser(), cancel.encode() + STARTUP.encode())
    assert text == "data followed a CancelRequest before its answer"


@pytest.mark.parametrize("request_", [fe.SSLRequest(), fe.GSSENCRequest()])
def test_data_sent_with_an_encryption_request_is_refused(request_: fe.FrontendMessage) -> None:
    """Plaintext queued behind the request could be taken as sent inside TLS (CVE-2021-23214)."""
    text = _violation(FrontendParser(), request_.encode() + STARTUP.encode())
    assert text == f"data followed a {type(request_).__name__} before its answer"


@pytest.mark.parametrize("answer", [b"S", b"N"])
def test_data_sent_with_the_answer_to_an_encryption_request_is_refused(answer: bytes) -> None:
    """The server's side of the same injection (CVE-2021-23222)."""
    parser = BackendParser()
    parser.expect_ssl_answer()
    text = _violation(parser, answer + be.ReadyForQuery("I").encode())
    assert text == "data followed the answer to an encryption request"


def test_strings_with_nul_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="NUL"):
        fe.Query("a\x00b").encode()


def _bind_by_reader(payload: bytes) -> fe.Bind:
    """A Bind read field by field with the strict ``Reader`` (what ``Bind.decode`` must
    accept and refuse alike, in one pass)."""
    r = Reader(payload, "Bind")
    portal, statement = r.cstring(), r.cstring()
    parameter_formats = tuple(r.int16() for _ in range(r.count()))
    parameters = r.values(r.count())
    result_formats = tuple(r.int16() for _ in range(r.count()))
    r.end()
    return fe.Bind(portal, statement, parameter_formats, parameters, result_formats)


def _outcome(decode: Callable[[bytes], fe.Bind], payload: bytes) -> object:
    try:
        return decode(payload)
    except ProtocolViolation as exc:
        return str(exc)


_BINDS = st.builds(
    fe.Bind,
    st.text(max_size=3).filter(lambda s: "\x00" not in s),
    st.text(max_size=3).filter(lambda s: "\x00" not in s),
    st.lists(st.sampled_from((0, 1)), max_size=3).map(tuple),
    st.lists(st.one_of(st.none(), st.binary(max_size=4)), max_size=3).map(tuple),
    st.lists(st.sampled_from((0, 1)), max_size=3).map(tuple),
)


@given(_BINDS, st.integers(0, 64), st.integers(0, 64), st.sampled_from((b"", b"\x00", b"\xff")))
def test_a_bind_is_read_as_strictly_as_field_by_field(
    bind: fe.Bind, cut: int, flip: int, extra: bytes
) -> None:
    payload = bind.encode()[5:]
    assert fe.Bind.decode(Reader(payload, "Bind")) == bind
    broken = bytearray(payload[: len(payload) - cut % (len(payload) + 1)] + extra)
    if broken:
        broken[flip % len(broken)] ^= 0xFF
    for candidate in (payload[: len(payload) - cut % (len(payload) + 1)] + extra, bytes(broken)):
        by_reader = _outcome(_bind_by_reader, candidate)
        assert _outcome(lambda p: fe.Bind.decode(Reader(p, "Bind")), candidate) == by_reader
