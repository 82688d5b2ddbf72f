"""Many selectors, each with a label, walked over one document in one pass (:class:`FieldMap`).

The selectors' steps make one automaton, made deterministic (each state a set of its states),
so each value on the way is visited once with one state, and only the members the selectors
name are looked at: the cost is the number of selected fields, not the size of the document. A
descendant step (``$..ssn``) is the exception: its search goes through every value below where
it starts. Replacing copies only the objects and arrays on the way to a replaced value and
never changes the document it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Final, Generic, NamedTuple, TypeVar

if TYPE_CHECKING:
    from piigate.gateway.http.selectors import Selector

__all__ = [
    "WILDCARD",
    "Descendant",
    "FieldMap",
    "Found",
    "Location",
    "Replacer",
    "Step",
    "Wildcard",
]

L = TypeVar("L")


class Wildcard:
    """``[*]``: every element of an array or member value of an object."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WILDCARD"


WILDCARD: Final = Wildcard()
Location = tuple[str | int, ...]


class Found(NamedTuple):
    """A present value (``None`` for a JSON null) and where it is: member names and indexes
    from the root (an index as given in the document: never negative)."""

    location: Location
    value: object


class Descendant(NamedTuple):
    """``..step``: ``step`` (a name, an index or ``[*]``) applied at the value and at every
    value below it (RFC 9535 descendant segment)."""

    step: str | int | Wildcard


Step = str | int | Wildcard | Descendant


class _Nfa(Generic[L]):
    """A state of the selectors' automaton before it is made deterministic: where each step
    leads (several places), where it leads without a step (``eps``: into a descendant search),
    and the labels of the selectors that end here."""

    __slots__ = ("eps", "indexes", "labels", "names", "number", "wild")

    def __init__(self, number: int) -> None:
        self.number = number  # creation order: a state's labels keep the selectors' order
        self.names: dict[str, list[_Nfa[L]]] = {}
        self.indexes: dict[int, list[_Nfa[L]]] = {}
        self.wild: list[_Nfa[L]] = []
        self.eps: list[_Nfa[L]] = []
        self.labels: list[L] = []


class _Node(Generic[L]):
    """A state of a :class:`FieldMap`'s walk: the labels of the selectors that end here, where
    each next step leads, and every label at or below (to skip branches no wanted label is in).

    The walk is deterministic: each state is a set of the automaton's states, and where a
    wildcard and a name (or index) both lead on, the name's state holds the wildcard's too, so
    each value is visited once with one state. Only a list element that two indexes reach
    (``[0]`` and ``[-1]`` of a list of one) needs a state made during the walk
    (:meth:`both`). A descendant search is a state that leads to itself on every step.
    """

    __slots__ = ("_table", "below", "indexes", "labels", "members", "names", "wild")

    def __init__(self, table: _Table[L], members: frozenset[_Nfa[L]], labels: tuple[L, ...]):
        self._table = table
        self.members = members
        self.names: dict[str, _Node[L]] = {}
        self.indexes: dict[int, _Node[L]] = {}
        self.wild: _Node[L] | None = None
        self.labels = labels
        self.below: frozenset[L] = frozenset(labels)

    def both(self, ahead: int, behind: int) -> _Node[L]:
        """The state of a list element that indexes ``ahead`` and ``behind`` both reach."""
        return self._table.made(self.indexes[ahead].members | self.indexes[behind].members)


class _Table(Generic[L]):
    """The deterministic states, made from sets of automaton states (subset construction)."""

    def __init__(self) -> None:
        self.states: dict[frozenset[_Nfa[L]], _Node[L]] = {}

    def made(self, members: frozenset[_Nfa[L]]) -> _Node[L]:
        """:meth:`state`, with every state's ``below`` settled after a new one (the walk's
        start, or a state a list element gets during the walk)."""
        found = self.states.get(members)
        if found is None:
            found = self.state(members)
            _settle_below(self.states.values())
        return found

    def state(self, members: frozenset[_Nfa[L]]) -> _Node[L]:
        """The state of ``members`` (closed under ``eps``), and every state it leads to."""
        found = self.states.get(members)
        if found is not None:
            return found
        ordered = sorted(members, key=lambda n: n.number)
        labels: list[L] = []
        for nfa in ordered:
            labels.extend(label for label in nfa.labels if label not in labels)
        node: _Node[L] = _Node(self, members, tuple(labels))
        self.states[members] = node
        wild = _closure(w for nfa in ordered for w in nfa.wild)
        if wild:
            node.wild = self.state(wild)
        for name in {k for nfa in ordered for k in nfa.names}:
            step = _closure(n for nfa in ordered for n in nfa.names.get(name, ()))
            node.names[name] = self.state(step | wild)
        for index in {i for nfa in ordered for i in nfa.indexes}:
            step = _closure(n for nfa in ordered for n in nfa.indexes.get(index, ()))
            node.indexes[index] = self.state(step | wild)
        return node


def _closure(states: Iterable[_Nfa[L]]) -> frozenset[_Nfa[L]]:
    """``states`` and every state their ``eps`` reach."""
    out: set[_Nfa[L]] = set()
    todo = list(states)
    while todo:
        nfa = todo.pop()
        if nfa not in out:
            out.add(nfa)
            todo.extend(nfa.eps)
    return frozenset(out)


def _settle_below(nodes: Iterable[_Node[L]]) -> None:
    """Each state's ``below``: its labels and those of every state it leads to (to a fixed
    point: a descendant search leads to itself)."""
    nodes = list(nodes)
    changed = True
    while changed:
        changed = False
        for node in nodes:
            below = set(node.below)
            for child in (*node.names.values(), *node.indexes.values(), node.wild):
                if child is not None:
                    below |= child.below
            if len(below) != len(node.below):
                node.below = frozenset(below)
                changed = True


def _automaton(fields: Iterable[tuple[Selector, L]]) -> _Node[L]:
    """The deterministic walk of every selector of ``fields`` with its label."""
    counter = iter(range(1 << 62))
    root: _Nfa[L] = _Nfa(next(counter))
    for selector, label in fields:
        state = root
        for step in selector.steps:
            if isinstance(step, Descendant):
                search: _Nfa[L] = _Nfa(next(counter))
                search.wild.append(search)  # on to any member or element, still searching
                state.eps.append(search)  # the value itself is searched too
                state, step = search, step.step
            after: _Nfa[L] = _Nfa(next(counter))
            if isinstance(step, Wildcard):
                state.wild.append(after)
            elif isinstance(step, int):
                state.indexes.setdefault(step, []).append(after)
            else:
                state.names.setdefault(step, []).append(after)
            state = after
        if label not in state.labels:
            state.labels.append(label)
    table: _Table[L] = _Table()
    return table.made(_closure([root]))


Replacer = Callable[[object, tuple[L, ...]], object]


class FieldMap(Generic[L]):
    """Selectors, each with a label, walked together: one pass over a document finds or
    replaces every field any of them selects. A value selected by several selectors carries
    every label they give it."""

    __slots__ = ("_root", "labels", "selectors")

    def __init__(self, fields: Iterable[tuple[Selector, L]]) -> None:
        self.selectors: tuple[tuple[Selector, L], ...] = tuple(fields)
        self._root = _automaton(self.selectors)
        self.labels: frozenset[L] = self._root.below

    def __bool__(self) -> bool:
        return bool(self.selectors)

    def __repr__(self) -> str:
        return f"FieldMap({', '.join(f'{s.text}: {label!r}' for s, label in self.selectors)})"

    def find(self, doc: object) -> list[tuple[Found, tuple[L, ...]]]:
        """Every present value (JSON null included) any selector selects, with its labels."""
        out: list[tuple[Found, tuple[L, ...]]] = []
        if self.selectors:
            _find(doc, self._root, (), out)
        return out

    def replace(self, doc: object, fn: Replacer[L], *, only: Collection[L] | None = None) -> object:
        """``doc`` with each selected value replaced by ``fn(value, labels)``, never changed in
        place. With ``only``, a selector counts only when its label is in ``only``, and
        ``labels`` holds just those."""
        if not self.selectors:
            return doc
        if only is None:
            return _replace(doc, self._root, fn, self.labels)
        wanted = frozenset(only)
        return doc if self.labels.isdisjoint(wanted) else _replace(doc, self._root, fn, wanted)


def _element(node: _Node[L], position: int, size: int) -> _Node[L] | None:
    """The state at ``position`` of a list of ``size``: by its index, counted from either end,
    else the wildcard's."""
    indexes = node.indexes
    if not indexes:
        return node.wild
    ahead, behind = indexes.get(position), indexes.get(position - size)
    if ahead is not None and behind is not None:
        return node.both(position, position - size)
    return ahead or behind or node.wild


def _steps(value: object, node: _Node[L]) -> Iterable[tuple[str | int, object, _Node[L]]]:
    """Each member or element of ``value`` the walk goes on to, with its state, in order."""
    if isinstance(value, dict):
        wild = node.wild
        if wild is None:
            return [(k, value[k], n) for k, n in node.names.items() if k in value]
        names = node.names
        return [(k, v, names.get(k, wild)) for k, v in value.items()]
    if isinstance(value, list) and (node.wild is not None or node.indexes):
        size = len(value)
        steps = ((p, v, _element(node, p, size)) for p, v in enumerate(value))
        return [(p, v, n) for p, v, n in steps if n is not None]
    return ()


def _find(
    value: object, node: _Node[L], location: Location, out: list[tuple[Found, tuple[L, ...]]]
) -> None:
    if node.labels:
        out.append((Found(location, value), node.labels))
    if isinstance(value, dict) and node.wild is None:  # the common case, without a list built
        for name, state in node.names.items():
            if name in value:
                _find(value[name], state, (*location, name), out)
        return
    for key, child, state in _steps(value, node):
        _find(child, state, (*location, key), out)


def _replace(value: object, node: _Node[L], fn: Replacer[L], wanted: frozenset[L]) -> object:
    hit = _wanted(node.labels, wanted)
    if hit:
        return fn(value, hit)  # replaced whole: nothing below it is left
    if isinstance(value, dict):
        return _replace_members(value, node, fn, wanted)
    if isinstance(value, list) and (node.wild is not None or node.indexes):
        return _replace_items(value, node, fn, wanted)
    return value


def _wanted(labels: tuple[L, ...], wanted: frozenset[L]) -> tuple[L, ...]:
    if not labels or (len(labels) == 1 and labels[0] in wanted):
        return labels
    return tuple(label for label in labels if label in wanted)


def _replace_members(
    value: dict[str, object], node: _Node[L], fn: Replacer[L], wanted: frozenset[L]
) -> dict[str, object]:
    copy: dict[str, object] | None = None
    names, wild = node.names, node.wild
    for key in names if wild is None else value:
        if key not in value:
            continue
        state = names.get(key, wild) if wild is not None else names[key]
        if state is None or state.below.isdisjoint(wanted):
            continue
        old = value[key]
        hit = _wanted(state.labels, wanted)  # a selected field (the common case), at once
        new = fn(old, hit) if hit else _replace(old, state, fn, wanted)
        if new is not old:
            if copy is None:
                copy = dict(value)
            copy[key] = new
    return value if copy is None else copy


def _replace_items(
    value: list[object], node: _Node[L], fn: Replacer[L], wanted: frozenset[L]
) -> list[object]:
    copy: list[object] | None = None
    size = len(value)
    wild = node.wild if not node.indexes else None  # the common case: [*] alone
    if wild is not None and wild.below.isdisjoint(wanted):
        return value
    for position, old in enumerate(value):
        state = wild or _element(node, position, size)
        if state is None or state.below.isdisjoint(wanted):
            continue
        new = _replace(old, state, fn, wanted)
        if new is not old:
            if copy is None:
                copy = list(value)
            copy[position] = new
    return value if copy is None else copy
