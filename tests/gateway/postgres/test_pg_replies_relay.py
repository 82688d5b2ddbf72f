"""The reply queue on the server's bytes (``Replies.relay``): what needs nothing goes out as it
came, whatever the split of the stream; what may need changing (masked rows, errors, notices)
is decoded and changed as the decoded path does; a reply out of step, or bytes that break the
protocol, end the session. Hand-built streams, no server."""

from __future__ import annotations

import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.gateway.http.masking import KeepLast
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.judge import Touches
from piigate.gateway.postgres.protocol import BackendParser, ProtocolViolation
from piigate.gateway.postgres.replies import Desync, Expect, Pending, Replies, Result
from piigate.gateway.postgres.statements import result_plan

SSN = "219-09-9999"
PEOPLE_OID = 16384  # the catalogued table's OID, as the server describes its columns
FIELDS = (
    be.FieldDescription("id", PEOPLE_OID, 1, 23, 4),
    be.FieldDescription("x", PEOPLE_OID, 3, 25),  # column 3 is the catalogued ssn
)
DESCRIPTION = be.RowDescription(FIELDS)
ROWS = [be.DataRow((str(n).encode(), f"{n:03d}-09-9999".encode())) for n in range(1, 4)]
UNIQUE = be.ErrorResponse(
    (("S", "ERROR"), ("C", "23505"), ("D", f"Key (ssn)=({SSN}) already exists."))
)
NOTICE = be.NoticeResponse((("S", "NOTICE"), ("C", "01000"), ("M", f"ssn {SSN}")))


def _stream(*messages: object) -> bytes:
    return b"".join(m.encode() for m in messages)  # type: ignore[attr-defined]


def _query_replies() -> bytes:
    """A simple query of two statements, a status and a notification between them."""
    return _stream(
        DESCRIPTION,
        *ROWS,
        be.CommandComplete("SELECT 3"),
        be.ParameterStatus("TimeZone", "UTC"),
        be.NotificationResponse(7, "jobs", "done"),
        be.EmptyQueryResponse(),
        be.ReadyForQuery("T"),
    )


def _extended_replies() -> bytes:
    return _stream(
        be.ParseComplete(),
        be.BindComplete(),
        DESCRIPTION,
        *ROWS[:2],
        be.PortalSuspended(),
        be.ReadyForQuery("I"),
    )


def _extended_queue(replies: Replies, result: Result) -> None:
    for pending in (
        Pending(Expect.PARSE),
        Pending(Expect.BIND),
        Pending(Expect.DESCRIBE),
        Pending(Expect.EXECUTE, results=[result]),
        Pending(Expect.SYNC),
    ):
        replies.push(pending)


def _relayed(replies: Replies, stream: bytes, cuts: list[int]) -> bytes:
    out, last = [], 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out.append(replies.relay(stream[last:cut]))
        last = cut
    return b"".join(out)


def _masking_plan() -> Result:
    """The gateway's plan for a statement whose parser reading vouches for no column (its
    outputs say neither carries PII): only the server's OIDs tell that column 2 is ``ssn``."""
    links = types.SimpleNamespace(
        oid_tables={PEOPLE_OID},
        oid_columns={(PEOPLE_OID, 3): "ssn"},
        config=types.SimpleNamespace(masks={"ssn": KeepLast(4)}),
    )
    touches = Touches(
        "select", reads=frozenset({"ssn"}), outputs=(frozenset(), frozenset(), frozenset())
    )
    return result_plan(links, touches, frozenset({"ssn"}))  # type: ignore[arg-type]


def test_every_split_of_a_stream_that_needs_nothing_gives_its_bytes() -> None:
    for stream, queue in (
        (_query_replies(), lambda r: r.push(Pending(Expect.QUERY, results=[Result()] * 2))),
        (_extended_replies(), lambda r: _extended_queue(r, Result())),
    ):
        for cut in range(len(stream) + 1):
            replies = Replies()
            queue(replies)
            assert _relayed(replies, stream, [cut]) == stream
            assert replies.idle


@given(st.lists(st.integers(min_value=0, max_value=len(_query_replies())), max_size=12))
def test_any_split_of_a_masked_stream_gives_the_same_bytes(cuts: list[int]) -> None:
    whole, split = Replies(), Replies()
    for replies in (whole, split):
        replies.push(Pending(Expect.QUERY, results=[_masking_plan(), Result()]))
    stream = _query_replies()
    expected = whole.relay(stream)
    assert _relayed(split, stream, cuts) == expected
    rows = [m for m in BackendParser().feed(expected) if isinstance(m, be.DataRow)]
    assert [r.values for r in rows] == [(r.values[0], b"***-**-9999") for r in ROWS]


def test_a_column_catalogued_by_oid_is_masked_on_the_extended_path_too() -> None:
    replies = Replies()
    _extended_queue(replies, _masking_plan())
    # The gateway's plan learns the columns from the result's own description here.
    masker = _masking_plan().masker
    assert masker is not None
    replies.queue[3].results[0].mask = masker(DESCRIPTION)
    out = BackendParser().feed(_relayed(replies, _extended_replies(), [7, 40]))
    rows = [m.values for m in out if isinstance(m, be.DataRow)]
    assert rows == [(b"1", b"***-**-9999"), (b"2", b"***-**-9999")]


def test_errors_and_notices_among_passing_rows_are_still_scrubbed() -> None:
    replies = Replies()
    replies.push(Pending(Expect.QUERY, results=[Result(scrub=True)]))
    stream = _stream(DESCRIPTION, ROWS[0], NOTICE, ROWS[1], UNIQUE, be.ReadyForQuery("E"))
    out = BackendParser().feed(_relayed(replies, stream, [3, 60]))
    assert out[:2] == [DESCRIPTION, ROWS[0]] and out[3] == ROWS[1]  # the rows: as they came
    notice, error = out[2], out[4]
    assert isinstance(notice, be.NoticeResponse) and SSN not in repr(notice)
    assert isinstance(error, be.ErrorResponse) and SSN not in repr(error)
    assert error.get("C") == "23505" and out[5] == be.ReadyForQuery("E") and replies.idle


def test_a_synthetic_answer_goes_out_right_after_the_reply_before_it() -> None:
    refusal = be.ErrorResponse((("S", "ERROR"), ("C", "42501"), ("M", "refused")))
    replies = Replies()
    replies.push(Pending(Expect.QUERY, results=[Result()]))
    replies.push(Pending(Expect.SYNTHETIC, synthetic=(refusal,), ready=True))
    replies.push(Pending(Expect.QUERY, results=[Result()]))
    first = _stream(be.CommandComplete("BEGIN"), be.ReadyForQuery("T"))
    second = _stream(be.CommandComplete("SET"), be.ReadyForQuery("T"))
    out = replies.relay(first + second)
    assert out == first + _stream(refusal, be.ReadyForQuery("T")) + second


@pytest.mark.parametrize(
    ("pending", "reply"),
    [
        (Pending(Expect.PARSE), ROWS[0]),  # a row where a ParseComplete was expected
        (Pending(Expect.BIND), be.ParseComplete()),
        (Pending(Expect.DESCRIBE), be.CommandComplete("SELECT 1")),
        (Pending(Expect.SYNC), ROWS[0]),
        (Pending(Expect.CLOSE), be.ParameterDescription((25,))),
    ],
)
def test_a_reply_out_of_step_ends_the_session(pending: Pending, reply: be.BackendMessage) -> None:
    replies = Replies()
    replies.push(pending)
    with pytest.raises(Desync):
        replies.relay(reply.encode())


@pytest.mark.parametrize(
    "stream",
    [
        b"D\x00\x00\x00\x02",  # a length below its own four bytes
        b"Z\x00\x00\x00\x06IT",  # a ReadyForQuery of two bytes
        b"1\x00\x00\x00\x05x",  # a ParseComplete with a body
        b"D" + (2**20).to_bytes(4, "big"),  # over the size limit
    ],
)
def test_bytes_that_break_the_protocol_end_the_session(stream: bytes) -> None:
    replies = Replies(max_message_size=1024)
    replies.push(Pending(Expect.PARSE))
    replies.push(Pending(Expect.QUERY, results=[Result()]))
    with pytest.raises(ProtocolViolation):
        replies.relay(be.ParseComplete().encode() + stream)


@pytest.mark.parametrize(
    "row",
    [
        b"D\x00\x00\x00\x05x",  # shorter than a column count
        b"D\x00\x00\x00\x0c\x00\x02\x00\x00\x00\x011z",  # its second value missing
    ],
)
def test_a_malformed_row_of_a_masked_result_ends_the_session(row: bytes) -> None:
    replies = Replies()
    replies.push(Pending(Expect.QUERY, results=[_masking_plan()]))
    good = ROWS[0].encode()
    with pytest.raises(ProtocolViolation):
        replies.relay(_stream(DESCRIPTION) + good + row + good)
