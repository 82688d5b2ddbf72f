"""The reader's caches: a statement sent again with other constants is not parsed again, and
a statement the server could not plan does not decide for the others of its shape."""

from __future__ import annotations

import json

import pytest

from piigate.gateway.postgres import reading
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName

CUSTOMERS = TableName("public", "customers")
CATALOG = Catalog({CUSTOMERS: {"ssn": CatalogColumn(CUSTOMERS, "ssn", "ssn")}})
E: frozenset[str] = frozenset()
# EXPLAIN (VERBOSE, FORMAT JSON) of a scan of a table the catalog does not know.
_PLAN = [{"Plan": {"Node Type": "Seq Scan", "Relation Name": "accounts", "Schema": "public",
                   "Alias": "accounts", "Output": ["abalance"]}}]  # fmt: skip


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = reading.analyse

    def counting(sql: str, *args: object, **kwargs: object) -> object:
        calls.append(sql)
        return real(sql, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reading, "analyse", counting)
    return calls


async def test_other_constants_share_the_analysis(analysed: list[str]) -> None:
    reader = reading.Reader(CATALOG, None)
    first = await reader.read("SELECT name FROM public.customers WHERE id = 1", None)
    again = await reader.read("select name  from public.customers where id = 22", None)
    assert again == first and first[0].reads == frozenset()
    assert len(analysed) == 1
    await reader.read("SELECT name FROM public.customers WHERE id = 1", "other_schema")
    assert len(analysed) == 2  # another search path: read anew


async def test_a_statement_with_pii_is_read_for_its_own_constants(analysed: list[str]) -> None:
    # Its row estimate (rows_over, the risk counts) depends on them.
    reader = reading.Reader(CATALOG, None)
    first = await reader.read("SELECT ssn FROM public.customers WHERE id = 1", None)
    again = await reader.read("SELECT ssn FROM public.customers WHERE id = 22", None)
    assert first[0].reads == again[0].reads == frozenset({"ssn"})
    assert len(analysed) == 2
    await reader.read("SELECT ssn FROM public.customers WHERE id = 1", None)
    assert len(analysed) == 2  # the same text: cached


async def test_an_unplanned_statement_does_not_stand_for_its_shape(analysed: list[str]) -> None:
    async def explain(sql: str, path: str | None) -> str:
        if "'x'" in sql:
            raise ValueError("invalid input syntax for type integer")
        return json.dumps(_PLAN)

    reader = reading.Reader(CATALOG, explain)
    failed = await reader.read("SELECT abalance FROM accounts WHERE aid = 'x'", None)
    assert failed[0].reads == frozenset({"ssn"})  # fail closed
    planned = await reader.read("SELECT abalance FROM accounts WHERE aid = 7", None)
    assert planned[0].reads == frozenset()
    assert len(analysed) == 2
    await reader.read("SELECT abalance FROM accounts WHERE aid = 8", None)
    assert len(analysed) == 2


async def test_what_is_cached_is_answered_without_waiting(analysed: list[str]) -> None:
    """``cached`` answers what ``read`` would from its caches alone, and nothing else."""
    reader = reading.Reader(CATALOG, None)
    plain, pii = (
        "SELECT name FROM public.customers WHERE id = 1",
        "SELECT ssn FROM public.customers",
    )
    assert reader.cached(plain, None) is None and reader.cached(pii, None) is None
    read = await reader.read(plain, None)
    assert reader.cached(plain, None) == read
    assert reader.cached("SELECT name FROM public.customers WHERE id = 5", None) == read
    assert reader.cached(plain, "other_schema") is None
    read = await reader.read(pii + " WHERE id = 1", None)
    assert reader.cached(pii + " WHERE id = 1", None) == read  # the same text
    assert reader.cached(pii + " WHERE id = 2", None) is None  # its own row estimate
    assert len(analysed) == 2  # looking in the caches reads nothing


async def test_a_plan_over_a_partition_catalogues_it() -> None:
    """A plan that scans a table inheriting from a catalogued one (a partition) reads its
    catalogued columns; the reader then knows it, and asks about no table twice."""
    partition = TableName("public", "customers_2026")
    scan = {"Node Type": "Seq Scan", "Relation Name": "customers_2026", "Schema": "public",
            "Alias": "customers_2026", "Output": ["ssn", "name"]}  # fmt: skip
    asked: list[list[tuple[str, str]]] = []

    async def explain(sql: str, path: str | None) -> str:
        return json.dumps([{"Plan": scan}] if "customers_2026" in sql else _PLAN)

    async def ancestors(tables: list[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
        asked.append(tables)
        return [(s, t, "public", "customers") for s, t in tables if t == "customers_2026"]

    reader = reading.Reader(CATALOG, explain, ancestors=ancestors)
    plain = await reader.read("SELECT abalance FROM accounts", None)
    assert plain[0].reads == frozenset() and asked == [[("public", "accounts")]]
    read = await reader.read("SELECT ssn, name FROM customers_2026", None)
    assert read[0].reads == frozenset({"ssn"}) and read[0].outputs == (frozenset({"ssn"}), E)
    assert reader.catalog.table(partition) == {"ssn": CatalogColumn(partition, "ssn", "ssn")}
    assert asked[1:] == [[("public", "customers_2026")]]
    again = await reader.read("SELECT ssn FROM public.customers_2026 WHERE id = 3", None)
    assert again[0].reads == frozenset({"ssn"}) and len(asked) == 2  # the parser knows it now


async def test_a_change_that_fires_a_trigger_reads_every_class() -> None:
    """The changed tables are asked about triggers (once per ttl); a statement that changes
    no rows is not asked."""
    asked: list[list[tuple[str, str]]] = []

    async def triggered(tables: list[tuple[str, str]]) -> bool:
        asked.append(tables)
        return True

    reader = reading.Reader(CATALOG, None, triggered=triggered)
    read = await reader.read("SELECT name FROM public.customers", None)
    assert read[0].reads == frozenset() and asked == []
    for n in (1, 2):
        changed = await reader.read(f"UPDATE public.customers SET name = 'x' WHERE id = {n}", None)
        assert changed[0].reads == changed[0].unmaskable == frozenset({"ssn"})
        assert changed[0].fail_closed == "fires triggers" and changed[0].outputs is None
    assert asked == [[("public", "customers")]]


async def test_what_follows_a_session_change_in_one_text_reads_every_class() -> None:
    """The server runs a statement after a SET (or a set_config) with the search path that
    statement left; the reader read it with the one in force before the text."""
    reader = reading.Reader(CATALOG, None)
    read = await reader.read(
        "BEGIN; SET search_path = x; SELECT name FROM public.customers; SHOW search_path; COMMIT",
        None,
    )
    assert [t.kind for t in read] == ["transaction", "set", "select", "show", "transaction"]
    assert read[2].reads == frozenset({"ssn"}) and read[2].fail_closed is not None
    assert all(t.reads == frozenset() for t in (read[0], read[1], read[3], read[4]))
    alone = await reader.read("SELECT name FROM public.customers; SET search_path = x", None)
    assert alone[0].reads == frozenset()  # before the change: read as it is
