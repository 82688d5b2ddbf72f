"""The reader's caches: a statement sent again with other constants is not parsed again, and
a statement the server could not plan does not decide for the others of its shape."""

from __future__ import annotations

import json

import pytest

from piigate.gateway.postgres import reading
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName

CUSTOMERS = TableName("public", "customers")
CATALOG = Catalog({CUSTOMERS: {"ssn": CatalogColumn(CUSTOMERS, "ssn", "ssn")}})
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
