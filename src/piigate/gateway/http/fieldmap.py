"""Many selectors, each with a label, walked over one document in one pass (:class:`FieldMap`).

The selectors' steps are merged into one trie, made deterministic, so each value on the way is
visited once with one state, and only the members the selectors name are looked at: the cost is
the number of selected fields, not the size of the document. Replacing copies only the objects
and arrays on the way to a replaced value and never changes the document it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Final, Generic, NamedTuple, TypeVar

if TYPE_CHECKING:
    from piigate.gateway.http.selectors import Selector

__all__ = ["WILDCARD", "FieldMap", "Found", "Location", "Replacer", "Step", "Wildcard"]

L = TypeVar("L")


class Wildcard:
    """``[*]``: every element of an array or member value of an object."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WILDCARD"


WILDCARD: Final = Wildcard()
Step = str | int | Wildcard
Location = tuple[str | int, ...]


class Found(NamedTuple):
    """A present value (``None`` for a JSON null) and where it is: member names and indexes
    from the root (an index as given in the document: never negative)."""

    location: Location
    value: object


class _Node(Generic[L]):
    """A state of a :class:`FieldMap`'s walk: the labels of the selectors that end here, where
    each next step leads, and every label at or below (to skip branches no wanted label is in).

    The walk is deterministic: where a wildcard and a name (or index) both lead on, the name's
    state already holds the wildcard's too (:func:`_merge`), so each value is visited once with
    one state. Only a list element that two indexes reach (``[0]`` and ``[-1]`` of a list of
    one) needs a merge during the walk.
    """

    __slots__ = ("below", "indexes", "labels", "names", "wild")

    def __init__(self, labels: tuple[L, ...] = ()) -> None:
        self.names: dict[str, _Node[L]] = {}
        self.indexes: dict[int, _Node[L]] = {}
        self.wild: _Node[L] | None = None
        self.labels = labels
        self.below: frozenset[L] = frozenset(labels)

    def add(self, steps: tuple[Step, ...], label: L) -> None:
        node = self
        for step in steps:
            if isinstance(step, Wildcard):
                node.wild = node.wild or _Node()
                node = node.wild
            elif isinstance(step, int):
                node = node.indexes.setdefault(step, _Node())
            else:
                node = node.names.setdefault(step, _Node())
        if label not in node.labels:
            node.labels = (*node.labels, label)

    def determinized(self) -> _Node[L]:
        out: _Node[L] = _Node(self.labels)
        wild = out.wild = self.wild.determinized() if self.wild is not None else None
        out.names = {k: _merge(n.determinized(), wild) for k, n in self.names.items()}
        out.indexes = {k: _merge(n.determinized(), wild) for k, n in self.indexes.items()}
        out.below = _below(out)
        return out


def _merge(a: _Node[L] | None, b: _Node[L] | None) -> _Node[L]:
    """One state for wherever both ``a`` and ``b`` (determinized) lead, itself determinized."""
    if a is None or b is None:
        node = a or b
        assert node is not None
        return node
    out: _Node[L] = _Node((*a.labels, *(label for label in b.labels if label not in a.labels)))
    out.wild = None if a.wild is None and b.wild is None else _merge(a.wild, b.wild)
    for key in a.names.keys() | b.names.keys():
        out.names[key] = _merge(a.names.get(key, a.wild), b.names.get(key, b.wild))
    for index in a.indexes.keys() | b.indexes.keys():
        out.indexes[index] = _merge(a.indexes.get(index, a.wild), b.indexes.get(index, b.wild))
    out.below = _below(out)
    return out


def _below(node: _Node[L]) -> frozenset[L]:
    below = set(node.labels)
    for child in (*node.names.values(), *node.indexes.values(), node.wild):
        if child is not None:
            below |= child.below
    return frozenset(below)


Replacer = Callable[[object, tuple[L, ...]], object]


class FieldMap(Generic[L]):
    """Selectors, each with a label, walked together: one pass over a document finds or
    replaces every field any of them selects. A value selected by several selectors carries
    every label they give it."""

    __slots__ = ("_root", "labels", "selectors")

    def __init__(self, fields: Iterable[tuple[Selector, L]]) -> None:
        self.selectors: tuple[tuple[Selector, L], ...] = tuple(fields)
        trie: _Node[L] = _Node()
        for selector, label in self.selectors:
            trie.add(selector.steps, label)
        self._root = trie.determinized()
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
        return _merge(ahead, behind)
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
