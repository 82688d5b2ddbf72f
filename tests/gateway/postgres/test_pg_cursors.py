"""Server-side cursors: what a FETCH from a cursor the session saw declared touches."""

from __future__ import annotations

import pytest

from piigate.gateway.postgres.cursors import Cursor, Cursors, cursor_statement
from piigate.gateway.postgres.judge import Touches

QUERY = Touches("select", reads=frozenset({"ssn"}), outputs=(frozenset({"ssn"}),))
FAIL_CLOSED = Touches("fetch", reads=frozenset({"ssn", "phone"}), fail_closed="a cursor's rows")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            'DECLARE "c1" CURSOR WITHOUT HOLD FOR SELECT ssn FROM t',
            Cursor("declare", "c1", "SELECT ssn FROM t"),
        ),
        ("declare c binary cursor for table t", Cursor("declare", "c", "table t")),
        ('FETCH FORWARD $1 FROM "c1"', Cursor("fetch", "c1")),
        ("FETCH ALL IN c", Cursor("fetch", "c")),
        ("MOVE ABSOLUTE -1 IN c", Cursor("move", "c")),
        ("CLOSE c", Cursor("close", "c")),
        ("CLOSE ALL", Cursor("close", None)),
        ("COMMIT", Cursor("commit", None)),
        ("discard all", Cursor("discard", None)),
        ("SELECT 1", None),
        ("BEGIN", None),
    ],
)
def test_what_a_statement_does_with_cursors(sql: str, expected: Cursor | None) -> None:
    assert cursor_statement(sql) == expected


async def test_a_fetch_reads_as_its_cursors_query_until_it_is_closed() -> None:
    cursors = Cursors()
    read_texts: list[str] = []

    async def read(sql: str) -> list[Touches]:
        read_texts.append(sql)
        return [QUERY]

    declare = [Touches("declare", reads=frozenset({"ssn"}))]
    assert await cursors.resolve("DECLARE c CURSOR FOR SELECT ssn FROM t", declare, read) == declare
    assert read_texts == ["SELECT ssn FROM t"]
    (fetched,) = await cursors.resolve("FETCH 10 FROM c", [FAIL_CLOSED], read)
    assert fetched.kind == "fetch" and fetched.reads == {"ssn"} and fetched.fail_closed is None
    assert fetched.outputs == (frozenset({"ssn"}),)
    assert await cursors.resolve("FETCH 10 FROM other", [FAIL_CLOSED], read) == [FAIL_CLOSED]
    await cursors.resolve("CLOSE c", [Touches("other")], read)
    assert await cursors.resolve("FETCH 10 FROM c", [FAIL_CLOSED], read) == [FAIL_CLOSED]


@pytest.mark.parametrize("ending", ["COMMIT", "ROLLBACK", "END", "CLOSE ALL", "DISCARD ALL"])
async def test_the_end_of_a_transaction_forgets_every_cursor(ending: str) -> None:
    cursors = Cursors()

    async def read(sql: str) -> list[Touches]:
        return [QUERY]

    await cursors.resolve("DECLARE c CURSOR WITH HOLD FOR SELECT 1", [Touches("declare")], read)
    await cursors.resolve(ending, [Touches("transaction")], read)
    assert await cursors.resolve("FETCH c", [FAIL_CLOSED], read) == [FAIL_CLOSED]


@pytest.mark.parametrize(
    ("kinds", "passes"),
    [
        (["select"], True),
        (["select", "insert"], True),
        (["declare"], False),
        (["fetch"], False),
        (["other"], False),  # CLOSE, DISCARD
        (["transaction"], False),
        (["select", "transaction"], False),  # a multi-statement string that ends one
    ],
)
async def test_passes_says_when_resolve_changes_nothing(kinds: list[str], passes: bool) -> None:
    cursors = Cursors()
    cursors.known["c"] = Touches("select", reads=frozenset({"ssn"}))
    touches = [Touches(kind) for kind in kinds]

    async def read(sql: str) -> list[Touches]:
        return []

    assert cursors.passes(touches) is passes
    if passes:  # resolve then gives the same back and forgets nothing
        assert await cursors.resolve("SELECT 1", touches, read) == touches
        assert "c" in cursors.known
