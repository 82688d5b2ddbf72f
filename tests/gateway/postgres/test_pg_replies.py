"""The reply queue (``replies``): each server message is read against what the client asked,
rows are masked per statement, errors and notices scrubbed, and the gateway's own answers go
out in order, with hand-built backend messages and no server."""

from __future__ import annotations

import pytest

from piigate.gateway.http.masking import KeepLast
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.protocol import BackendParser, ProtocolViolation
from piigate.gateway.postgres.replies import (
    BINDING,
    SYNCING,
    Desync,
    Expect,
    Pending,
    Replies,
    Result,
)
from piigate.gateway.postgres.rows import RowMask, row_mask

SSN = b"219-09-9999"
MASKED = b"***-**-9999"
DESCRIPTION = be.RowDescription((be.FieldDescription("ssn", 16384, 3, 25),))
ROW = be.DataRow((SSN,))
UNIQUE = be.ErrorResponse(
    (
        ("S", "ERROR"),
        ("C", "23505"),
        ("M", 'duplicate key value violates unique constraint "c_ssn_key"'),
        ("D", f"Key (ssn)=({SSN.decode()}) already exists."),
        ("t", "customers"),
    )
)
NOTICE = be.NoticeResponse((("S", "NOTICE"), ("C", "01000"), ("M", f"ssn {SSN.decode()}")))


def _masker(description: be.RowDescription) -> RowMask | None:
    fields = description.fields
    carried = [frozenset({"ssn"})] * len(fields)
    return row_mask(fields, carried, frozenset({"ssn"}), {"ssn": KeepLast(4)}, carried)


def _masking() -> Result:
    return Result(masker=_masker, scrub=True)


def _decoded(chunks: list[bytes]) -> list[be.BackendMessage]:
    return BackendParser().feed(b"".join(chunks))


def _feed(replies: Replies, *messages: be.BackendMessage) -> list[be.BackendMessage]:
    out: list[bytes] = []
    for message in messages:
        out += replies.feed(message)
    return _decoded(out)


def test_a_simple_query_of_two_statements_masks_the_second() -> None:
    replies = Replies()
    assert replies.push(Pending(Expect.QUERY, results=[Result(), _masking()])) == []
    out = _feed(
        replies,
        DESCRIPTION,
        ROW,
        be.CommandComplete("SELECT 1"),
        DESCRIPTION,
        ROW,
        be.DataRow((None,)),
        be.CommandComplete("SELECT 2"),
        be.ReadyForQuery("T"),
    )
    assert out == [
        DESCRIPTION,
        ROW,
        be.CommandComplete("SELECT 1"),
        DESCRIPTION,
        be.DataRow((MASKED,)),
        be.DataRow((None,)),
        be.CommandComplete("SELECT 2"),
        be.ReadyForQuery("T"),
    ]
    assert replies.idle and replies.status == "T"


def test_an_error_in_a_simple_query_is_scrubbed_when_its_statement_masks() -> None:
    replies = Replies()
    replies.push(Pending(Expect.QUERY, results=[Result(), _masking()]))
    out = _feed(replies, be.CommandComplete("INSERT 0 1"), UNIQUE, be.ReadyForQuery("E"))
    assert out[0] == be.CommandComplete("INSERT 0 1")
    assert isinstance(out[1], be.ErrorResponse)
    assert out[1].get("D") == "Key (ssn)=(…) already exists." and out[1].get("t") == "customers"
    assert out[2] == be.ReadyForQuery("E") and replies.idle
    # A statement that may show everything passes its error as it came.
    replies.push(Pending(Expect.QUERY, results=[Result()]))
    assert _feed(replies, UNIQUE) == [UNIQUE]


def test_the_extended_protocol_masks_the_executed_rows() -> None:
    replies = Replies()
    described: list[be.RowDescription | None] = []
    execute = _masking()
    execute.mask = _masker(DESCRIPTION)
    for pending in (
        Pending(Expect.PARSE),
        Pending(Expect.BIND),
        Pending(Expect.DESCRIBE, on_description=described.append),
        Pending(Expect.EXECUTE, results=[execute]),
        Pending(Expect.SYNC),
    ):
        assert replies.push(pending) == []
    out = _feed(
        replies,
        be.ParseComplete(),
        be.BindComplete(),
        DESCRIPTION,
        ROW,
        be.CommandComplete("SELECT 1"),
        be.ReadyForQuery("I"),
    )
    assert out == [
        be.ParseComplete(),
        be.BindComplete(),
        DESCRIPTION,
        be.DataRow((MASKED,)),
        be.CommandComplete("SELECT 1"),
        be.ReadyForQuery("I"),
    ]
    assert described == [DESCRIPTION] and replies.idle


def test_a_describe_with_no_rows_reports_none() -> None:
    replies = Replies()
    described: list[be.RowDescription | None] = []
    replies.push(Pending(Expect.DESCRIBE, on_description=described.append))
    assert _feed(replies, be.ParameterDescription((25,)), be.NoData()) == [
        be.ParameterDescription((25,)),
        be.NoData(),
    ]
    assert described == [None] and replies.idle


def test_an_error_mid_batch_drops_what_was_pending_until_the_sync() -> None:
    replies = Replies()
    refusal = be.ErrorResponse((("S", "ERROR"), ("C", "42501"), ("M", "refused")))
    replies.push(Pending(Expect.PARSE))
    replies.push(Pending(Expect.BIND))
    # The gateway's own answer queued behind the Bind: it waits for the replies before it.
    assert replies.push(Pending(Expect.SYNTHETIC, synthetic=(refusal,))) == []
    replies.push(Pending(Expect.EXECUTE, results=[Result()]))
    replies.push(Pending(Expect.SYNC))
    out = _feed(replies, be.ParseComplete(), UNIQUE, be.ReadyForQuery("I"))
    # The server skipped the rest up to the Sync, and so did the gateway's own answer.
    assert [type(m) for m in out] == [be.ParseComplete, be.ErrorResponse, be.ReadyForQuery]
    assert isinstance(out[1], be.ErrorResponse) and "219" not in repr(out[1])  # BIND: scrubbed
    assert refusal not in out and replies.idle


def test_an_unscrubbed_execute_error_is_shown_whole() -> None:
    replies = Replies()
    replies.push(Pending(Expect.EXECUTE, results=[Result()]))
    replies.push(Pending(Expect.SYNC))
    assert _feed(replies, UNIQUE, be.ReadyForQuery("E")) == [UNIQUE, be.ReadyForQuery("E")]


def test_a_synthetic_answer_waits_for_earlier_replies_and_ends_ready() -> None:
    replies = Replies()
    refusal = be.ErrorResponse((("S", "ERROR"), ("C", "42501"), ("M", "refused")))
    replies.push(Pending(Expect.QUERY, results=[Result()]))
    assert replies.push(Pending(Expect.SYNTHETIC, synthetic=(refusal,), ready=True)) == []
    out = _feed(replies, be.CommandComplete("BEGIN"), be.ReadyForQuery("T"))
    assert out == [
        be.CommandComplete("BEGIN"),
        be.ReadyForQuery("T"),
        refusal,
        be.ReadyForQuery("T"),  # the transaction state seen last
    ]
    assert replies.idle
    # With nothing before it, it is answered at once.
    assert _decoded(replies.push(Pending(Expect.SYNTHETIC, synthetic=(refusal,), ready=True))) == [
        refusal,
        be.ReadyForQuery("T"),
    ]
    assert _decoded(replies.push(Pending(Expect.SYNTHETIC, synthetic=(refusal,)))) == [refusal]


def test_a_hidden_describe_is_swallowed_but_reported() -> None:
    replies = Replies()
    described: list[be.RowDescription | None] = []
    execute = _masking()

    def found(description: be.RowDescription | None) -> None:
        described.append(description)
        if description is not None:
            execute.mask = _masker(description)

    replies.push(Pending(Expect.DESCRIBE, hidden=True, on_description=found))
    replies.push(Pending(Expect.EXECUTE, results=[execute]))
    replies.push(Pending(Expect.SYNC))
    out = _feed(replies, DESCRIPTION, ROW, be.CommandComplete("SELECT 1"), be.ReadyForQuery("I"))
    assert out == [be.DataRow((MASKED,)), be.CommandComplete("SELECT 1"), be.ReadyForQuery("I")]
    assert described == [DESCRIPTION]


def test_hidden_parse_bind_and_close_completions_are_swallowed() -> None:
    replies = Replies()
    for kind in (Expect.PARSE, Expect.BIND, Expect.CLOSE):
        replies.push(Pending(kind, hidden=True))
    assert _feed(replies, be.ParseComplete(), be.BindComplete(), be.CloseComplete()) == []
    assert replies.idle


def test_a_hidden_query_gives_its_first_row_and_forwards_nothing() -> None:
    replies = Replies()
    rows: list[be.DataRow | None] = []
    replies.push(Pending(Expect.QUERY, hidden=True, on_row=rows.append))
    path = be.DataRow((b'"$user", public',))
    described = be.RowDescription((be.FieldDescription("search_path"),))
    out = _feed(
        replies,
        described,
        path,
        be.DataRow((b"second",)),
        be.CommandComplete("SHOW"),
        be.ReadyForQuery("T"),
    )
    assert out == [] and rows == [path]
    assert replies.idle and replies.status == "T"


def test_a_hidden_query_that_fails_gives_none_once() -> None:
    replies = Replies()
    rows: list[be.DataRow | None] = []
    replies.push(Pending(Expect.QUERY, hidden=True, on_row=rows.append))
    assert _feed(replies, UNIQUE, be.ReadyForQuery("E")) == []
    assert rows == [None] and replies.idle and replies.status == "E"
    # Ended without a row or an error: None too.
    replies.push(Pending(Expect.QUERY, hidden=True, on_row=rows.append))
    assert _feed(replies, be.CommandComplete("SHOW"), be.ReadyForQuery("I")) == []
    assert rows == [None, None]


def test_a_synthetic_answer_after_a_hidden_query_carries_its_state() -> None:
    replies = Replies()
    replies.push(Pending(Expect.QUERY, hidden=True, on_row=lambda row: None))
    done = be.CommandComplete("SET")
    replies.push(Pending(Expect.SYNTHETIC, synthetic=(done,), ready=True))
    out = _feed(replies, be.DataRow((b"x",)), be.ReadyForQuery("T"))
    assert out == [done, be.ReadyForQuery("T")]


def test_notices_are_scrubbed_with_the_head_statement() -> None:
    replies = Replies()
    # Nothing pending: scrubbed.
    [alone] = _feed(replies, NOTICE)
    assert isinstance(alone, be.NoticeResponse) and alone.get("M") == "…"
    # The head statement scrubs: scrubbed.
    replies.push(Pending(Expect.QUERY, results=[_masking()]))
    [scrubbed] = _feed(replies, NOTICE)
    assert isinstance(scrubbed, be.NoticeResponse) and "219" not in repr(scrubbed)
    _feed(replies, be.CommandComplete("SELECT 0"), be.ReadyForQuery("I"))
    # The head statement may show everything: as it came.
    replies.push(Pending(Expect.QUERY, results=[Result()]))
    assert _feed(replies, NOTICE) == [NOTICE]


def test_parameter_status_and_notifications_always_pass() -> None:
    replies = Replies()
    status = be.ParameterStatus("TimeZone", "UTC")
    note = be.NotificationResponse(7, "jobs", "done")
    assert _feed(replies, status, note) == [status, note]
    replies.push(Pending(Expect.QUERY, hidden=True, on_row=lambda row: None))
    assert _feed(replies, status) == [status]


def test_a_reply_to_nothing_is_dropped_unless_it_is_an_error() -> None:
    replies = Replies()
    assert _feed(replies, ROW, be.ReadyForQuery("I")) == []
    fatal = be.ErrorResponse((("S", "FATAL"), ("C", "57P01"), ("M", f"bye {SSN.decode()}")))
    [out] = _feed(replies, fatal)
    assert isinstance(out, be.ErrorResponse) and out.get("C") == "57P01"
    assert "219" not in repr(out)


def test_statements_beyond_the_analysed_ones_use_the_overflow_result() -> None:
    replies = Replies()
    overflow = _masking()
    replies.push(Pending(Expect.QUERY, results=[Result()], overflow=overflow))
    out = _feed(
        replies,
        be.CommandComplete("SET"),
        DESCRIPTION,
        ROW,
        be.CommandComplete("SELECT 1"),
        DESCRIPTION,
        ROW,
        be.CommandComplete("SELECT 1"),
        UNIQUE,
        be.ReadyForQuery("I"),
    )
    rows = [m for m in out if isinstance(m, be.DataRow)]
    assert rows == [be.DataRow((MASKED,))] * 2
    assert overflow.described == DESCRIPTION
    [error] = [m for m in out if isinstance(m, be.ErrorResponse)]
    assert "219" not in repr(error)


def test_without_an_overflow_further_statements_are_scrubbed() -> None:
    replies = Replies()
    pending = Pending(Expect.QUERY, results=[Result()])
    replies.push(pending)
    _feed(replies, be.EmptyQueryResponse())
    assert pending.result is None and pending.scrubbing
    [error] = _feed(replies, UNIQUE)
    assert "219" not in repr(error)


def test_a_portal_suspended_ends_its_execute() -> None:
    replies = Replies()
    replies.push(Pending(Expect.EXECUTE, results=[Result()]))
    replies.push(Pending(Expect.EXECUTE, results=[_masking()]))
    replies.queue[1].results[0].mask = _masker(DESCRIPTION)
    out = _feed(replies, ROW, be.PortalSuspended(), ROW, be.CommandComplete("SELECT 2"))
    assert out == [ROW, be.PortalSuspended(), be.DataRow((MASKED,)), be.CommandComplete("SELECT 2")]
    assert replies.idle


def _prepared(replies: Replies, execute: Result) -> bytes:
    """A -M prepared transaction queued (Bind, Describe, Execute, Sync), and the server's
    replies to it, in one chunk."""
    for pending in (BINDING, Pending(Expect.DESCRIBE), Pending(Expect.EXECUTE, results=[execute])):
        replies.push(pending)
    replies.push(SYNCING)
    return (
        b"".join(
            m.encode()
            for m in (be.BindComplete(), DESCRIPTION, ROW, be.CommandComplete("SELECT 1"))
        )
        + be.ReadyForQuery("I").encode()
    )


def test_a_result_with_nothing_to_mask_goes_out_as_the_servers_bytes() -> None:
    replies = Replies()
    refusal = be.ErrorResponse((("S", "ERROR"), ("C", "42501"), ("M", "refused")))
    server = _prepared(replies, Result())
    replies.push(Pending(Expect.SYNTHETIC, synthetic=(refusal,), ready=True))
    out = replies.relay(server)
    assert out == server + refusal.encode() + be.ReadyForQuery("I").encode()  # in order
    assert replies.idle
    # The entries every session shares are as they were.
    assert Pending(Expect.BIND) == BINDING
    assert Pending(Expect.SYNC) == SYNCING


def test_masked_results_are_masked_in_the_same_chunk() -> None:
    replies = Replies()
    execute = _masking()
    execute.mask = _masker(DESCRIPTION)  # as the session sets it from the Describe's answer
    out = replies.relay(_prepared(replies, execute))
    assert _decoded([out])[2] == be.DataRow((MASKED,))
    # A simple query's masker reads the RowDescription that comes with its rows.
    replies.push(Pending(Expect.QUERY, results=[_masking()]))
    done = (be.CommandComplete("SELECT 1"), be.ReadyForQuery("I"))
    out = replies.relay(b"".join(m.encode() for m in (DESCRIPTION, ROW, *done)))
    assert _decoded([out]) == [DESCRIPTION, be.DataRow((MASKED,)), *done]
    assert replies.idle


@pytest.mark.parametrize(
    ("pending", "reply"),
    [
        (BINDING, b"2" + (5).to_bytes(4, "big") + b"x"),  # a completion with a body
        (SYNCING, b"Z" + (6).to_bytes(4, "big") + b"II"),  # a state of two bytes
        (SYNCING, b"Z" + (4).to_bytes(4, "big")),  # of none
    ],
)
def test_malformed_completions_are_refused(pending: Pending, reply: bytes) -> None:
    replies = Replies()
    replies.push(pending)
    with pytest.raises(ProtocolViolation):
        replies.relay(reply)


@pytest.mark.parametrize("reply", [be.ParseComplete(), be.CommandComplete("SELECT 1")])
def test_a_completion_out_of_step_ends_the_session(reply: be.BackendMessage) -> None:
    replies = Replies()
    replies.push(BINDING)
    with pytest.raises(Desync):
        replies.relay(reply.encode())
