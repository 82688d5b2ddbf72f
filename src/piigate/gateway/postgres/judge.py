"""From what a statement touches to one ruling: run it (masking some classes), step up, or deny.

:class:`Touches` is one statement's use of catalogued PII, merged from the two readings: the
parser's (``analysis``) and the server's plan (``plan``, when the parser could not resolve every
name). Where either is unsure, it takes more, never less: a statement that cannot be analysed
touches every catalogued class in every way.

:func:`rule` asks the engine once per action the statements take (``delete``, ``update``,
``create``, ``export``, ``read``, each with its PII classes), audited like any other decision,
and combines the answers: a deny wins, then a step-up; otherwise the statement runs with the
union of the masks. A mask cannot hide what the statement does with a class outside its result
rows (a filter, an ordering, a copy into another object, an export): such a use of a masked
class needs the step-up that would unmask it (the masking decision's challenge).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from piigate.callers import Caller
from piigate.gateway.postgres.analysis import Statement, Use
from piigate.gateway.postgres.catalog import Catalog, TableName
from piigate.gateway.postgres.plan import PlanFacts
from piigate.model import (
    AccessRequest,
    Action,
    Context,
    Decision,
    Outcome,
    Resource,
    Rows,
)

__all__ = [
    "Ruling",
    "Touches",
    "changes_session",
    "every_class",
    "merge",
    "nothing_to_ask",
    "rule",
]

_WRITES = {"insert": Action.CREATE, "copy_from": Action.CREATE}
# Statements whose errors may show whole rows of the table they change ("Failing row contains").
_ROW_CHANGES: Final = frozenset({"update", "delete", "merge"})
# System relations that hold values of every table's columns (statistics, large objects), or
# other sessions' statement texts, which quote the values they were written with (every
# session of this gateway runs as its one upstream role, and a role sees its own sessions).
_VALUE_CATALOGS: Final = frozenset(
    {
        "pg_statistic",
        "pg_stats",
        "pg_statistic_ext_data",
        "pg_stats_ext",
        "pg_stats_ext_exprs",
        "pg_largeobject",
        "pg_stat_activity",
    }
)


@dataclass(frozen=True, slots=True)
class Touches:
    kind: str
    reads: frozenset[str] = frozenset()
    unmaskable: frozenset[str] = frozenset()  # read where masking the rows cannot hide it
    writes: frozenset[str] = frozenset()
    deletes: frozenset[str] = frozenset()
    exports: frozenset[str] = frozenset()
    outputs: tuple[frozenset[str], ...] | None = None  # per result column; None: unknown
    tables: tuple[TableName, ...] = ()
    refuse: str | None = None
    fail_closed: str | None = None
    changes_session: bool = False  # it may change how later statements read (search path...)
    rows: int | None = None  # the server's estimate of the rows it reads or changes
    bounded: bool = True  # False: a DELETE or UPDATE without WHERE
    # It reads, writes, deletes or exports a catalogued class: set from those, once.
    any: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        touched = bool(self.reads or self.writes or self.deletes or self.exports)
        object.__setattr__(self, "any", touched)


def every_class(kind: str, catalog: Catalog, why: str) -> Touches:
    """A statement taken as reading and carrying off every catalogued class (fail closed)."""
    classes = catalog.classes()
    return Touches(
        kind,
        reads=classes,
        unmaskable=classes,
        exports=classes if kind == "copy_to" else frozenset(),
        outputs=None,
        tables=tuple(sorted(catalog.tables())),
        fail_closed=why,
        changes_session=True,  # what it runs may change the session too
    )


def merge(statement: Statement, facts: PlanFacts | None, catalog: Catalog) -> Touches:
    """The parser's reading of ``statement`` joined with the server's plan ``facts``."""
    if statement.refuse is not None:
        return Touches(statement.kind, refuse=statement.refuse)
    if statement.fail_closed is not None:
        return every_class(statement.kind, catalog, statement.fail_closed)
    changes = statement.changes_session
    named = set(statement.tables) | (set(facts.relations) if facts is not None else set())
    if any(t.name in _VALUE_CATALOGS and t.schema in ("", "pg_catalog") for t in named):
        why = "reads statistics, large objects or statement texts"
        return every_class(statement.kind, catalog, why)
    by_use: dict[Use, set[str]] = {use: set() for use in Use}
    for touch in statement.touches:
        by_use[touch.use].add(touch.column.pii)
    reads = by_use[Use.OUTPUT] | by_use[Use.FILTER] | by_use[Use.FLOW]
    unmaskable = by_use[Use.FILTER] | by_use[Use.FLOW] | by_use[Use.EXPORT]
    outputs = statement.outputs
    tables = set(statement.tables)
    if facts is not None:
        if facts.functions:
            why = "calls " + ", ".join(sorted(facts.functions))
            # A function may change the session too (set_config): read it again after.
            return every_class(statement.kind, catalog, why)
        reads |= {c.pii for c in facts.reads}
        unmaskable |= {c.pii for c in facts.filters}
        for table in facts.whole_rows:
            reads |= catalog.classes_of(table)
        tables |= facts.relations
        outputs = _joined(outputs, facts.outputs)
    kind = statement.kind
    if kind in _ROW_CHANGES:
        # The server's errors may quote the changed rows whole: their classes count as read
        # (maskable: the error texts are then scrubbed).
        changed = set(tables) | ({facts.modified} if facts and facts.modified else set())
        for table in changed:
            reads |= catalog.classes_of(table)
    deletes = frozenset(by_use[Use.DELETE])
    exports = frozenset(by_use[Use.EXPORT])
    return Touches(
        kind,
        reads=frozenset(reads),
        unmaskable=frozenset(unmaskable),
        writes=frozenset(by_use[Use.WRITE]),
        deletes=deletes,
        exports=exports,
        outputs=outputs,
        tables=tuple(sorted(tables)),
        changes_session=changes,
    )


def _joined(
    parser: tuple[frozenset[str], ...] | None, plan: tuple[frozenset[str], ...] | None
) -> tuple[frozenset[str], ...] | None:
    """Per column, what either reading says it may carry. The plan may list hidden sort and
    group keys after the result's columns; a plan with fewer columns than the parser's reading
    disagrees with it, and neither is trusted."""
    if plan is None or parser is None:
        return parser if plan is None else plan
    if len(plan) < len(parser):
        return None
    return tuple(x | y for x, y in zip(parser, plan[: len(parser)], strict=True))


@dataclass(frozen=True, slots=True)
class Ruling:
    outcome: Outcome
    masked: frozenset[str] = frozenset()
    decision: Decision | None = None  # the one that asks the step-up or denies
    what: str = ""  # "read public.customers (ssn)", for the messages
    decisions: tuple[str, ...] = field(default=())


Decide = Callable[[AccessRequest, Caller], Awaitable[Decision]]


def nothing_to_ask(touches: Sequence[Touches]) -> bool:
    """No statement touches a catalogued class or is refused: :func:`rule` then allows them
    with nothing masked and asks the engine nothing, so a caller may skip it."""
    for t in touches:  # noqa: SIM110 (a loop: no generator per statement on the hot path)
        if t.any or t.refuse is not None:
            return False
    return True


def changes_session(touches: Sequence[Touches]) -> bool:
    """A statement among ``touches`` may change how later ones read (the search path...)."""
    for t in touches:  # noqa: SIM110 (a loop: no generator per statement on the hot path)
        if t.changes_session:
            return True
    return False


async def rule(
    touches: Sequence[Touches],
    decide: Decide,
    *,
    caller: Caller,
    context: Context,
    grants: tuple[str, ...],
    binding: Mapping[str, str],
    unmask: bool = False,
) -> Ruling:
    """The ruling on statements that run as one (a simple query's, or one Execute). With
    ``unmask`` (the session's ``SET piigate.unmask = on``), what would be masked asks for the
    step-up that shows it instead.

    The actions are asked from the reads to the deletes, and the first that does not allow
    ends the asking: an allow may spend a grant bound to this statement (``max_age: 0``, most
    often a delete's), which must not be spent on a statement that then does not run."""
    for touch in touches:
        if touch.refuse is not None:
            return Ruling(Outcome.DENY, what=touch.refuse)
    asks = _asks(touches)
    rows = _rows(touches)
    masked: set[str] = set()
    step_up: tuple[Decision, str] | None = None
    ids: list[str] = []
    unmaskable = frozenset().union(*(t.unmaskable | t.exports for t in touches))
    for action, classes, table in asks:
        request = AccessRequest(
            subject=caller.subject,
            action=action,
            pii=classes,
            resource=Resource("table", None if table is None else str(table)),
            session=caller.session,
            context=context,
            rows=rows,
            grants=grants,
            binding_fields={**binding, "action": action.value},
        )
        decision = await decide(request, caller)
        ids.append(decision.id)
        what = f"{action.value} {_names(table, classes)}"
        if decision.outcome is Outcome.DENY:
            return Ruling(Outcome.DENY, decision=decision, what=what, decisions=tuple(ids))
        if decision.outcome is Outcome.STEP_UP:
            step_up = (decision, what)
            break
        hidden = decision.mask & (unmaskable | (classes if action is not Action.READ else set()))
        if unmask:
            hidden = decision.mask
        if hidden:
            # A filter, a copy or an export of a masked class: only the step-up that unmasks
            # it lets the statement run.
            if decision.challenge is None:
                return Ruling(Outcome.DENY, decision=decision, what=what, decisions=tuple(ids))
            step_up = (decision, f"{action.value} {_names(table, hidden)}")
            break
        masked |= decision.mask
    if step_up is not None:
        return Ruling(Outcome.STEP_UP, decision=step_up[0], what=step_up[1], decisions=tuple(ids))
    return Ruling(Outcome.ALLOW, masked=frozenset(masked), decisions=tuple(ids))


def _asks(touches: Sequence[Touches]) -> list[tuple[Action, frozenset[str], TableName | None]]:
    """One request per action, the reads first and the deletes last, with its classes."""
    per: dict[Action, set[str]] = {}
    table: dict[Action, TableName | None] = {}
    for t in touches:
        first = t.tables[0] if t.tables else None
        for action, classes in (
            (Action.DELETE, t.deletes),
            (_WRITES.get(t.kind, Action.UPDATE), t.writes),
            (Action.EXPORT, t.exports),
            (Action.READ, t.reads - t.exports),  # what it exports, the export covers
        ):
            if classes:
                per.setdefault(action, set()).update(classes)
                table.setdefault(action, first)
    order = (Action.READ, Action.EXPORT, Action.CREATE, Action.UPDATE, Action.DELETE)
    return [(a, frozenset(per[a]), table[a]) for a in order if a in per]


def _rows(touches: Sequence[Touches]) -> Rows | None:
    """The statements' rows for ``rows_over`` rules and the risk counts: the largest estimate,
    and unbounded when one of them has no WHERE."""
    estimates = [t.rows for t in touches if t.rows is not None]
    bounded = all(t.bounded for t in touches)
    if not estimates and bounded:
        return None
    return Rows(max(estimates, default=0), bounded)


def _names(table: TableName | None, classes: frozenset[str]) -> str:
    where = "" if table is None else f"{table} "
    return f"{where}({', '.join(sorted(classes))})"


def statement_digest(text: str, parameters: Sequence[bytes | None] = ()) -> str:
    """What binds a ``max_age: 0`` step-up to this one statement: the digest of its text and
    the values bound to it (never the values themselves)."""
    h = hashlib.sha256(text.encode())
    for value in parameters:
        h.update(b"\x00" if value is None else b"\x01" + len(value).to_bytes(4, "big") + value)
    return h.hexdigest()
