"""The ``routes`` of ``gateway.http``: each route read and checked against the policy.

A route names only what the policy defines (its PII classes; actions are the engine's), its
selectors and path template must compile, and a route that an earlier one leaves no request to
(same or fewer methods, a path every one of which the earlier template matches) is an error:
it can never match. Two routes that share some requests without either covering the other get
a warning naming an example path, since the earlier one takes those. Problems are recorded with
``FILE:LINE:COL`` like the policy's.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final

import yaml

from piigate.gateway.http.paths import PathTemplate, TemplateError
from piigate.gateway.http.routes import IdTemplate, Route, TransactionFields
from piigate.gateway.http.selectors import FieldMap, Selector, SelectorError, compile_selector
from piigate.model import Action
from piigate.policy.yamlnodes import NodeReader

__all__ = ["RouteReader"]

ROUTE_KEYS: Final = frozenset(
    {"match", "action", "resource", "response_fields", "request_fields", "pii", "transaction"}
)
MATCH_KEYS: Final = frozenset({"method", "path"})
RESOURCE_KEYS: Final = frozenset({"type", "id"})
TRANSACTION_KEYS: Final = frozenset({"amount", "currency", "payee"})
# RFC 9110 §5.6.2: a method is a token.
TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BODILESS: Final = frozenset({"GET", "HEAD"})


class RouteReader:
    """Reads routes against the PII classes of the policy; warnings go to ``warnings``."""

    def __init__(self, read: NodeReader, *, pii: Collection[str], warnings: list[str]) -> None:
        self.read = read
        self.errors = read.errors
        self.pii = pii
        self.warnings = warnings

    def warn(self, node: yaml.Node, message: str) -> None:
        self.warnings.append(f"{self.errors.position(node)}: warning: {message}")

    def routes(self, node: yaml.Node) -> tuple[Route, ...]:
        """The routes in file order; the order they are tried in."""
        routes: list[tuple[Route, yaml.Node]] = []
        for index, item in enumerate(self.read.sequence(node, "routes") or []):
            route = self._route(item, index)
            if route is not None:
                self._check_order(route, item, routes)
                routes.append((route, item))
        return tuple(route for route, _ in routes)

    def _route(self, node: yaml.Node, index: int) -> Route | None:
        spec = self.read.mapping(node, "a route", ROUTE_KEYS)
        if spec is None:
            return None
        for required in ("match", "action"):
            if required not in spec:
                self.errors.at(node, f"a route needs {required!r}")
        matched = self._match(spec["match"][1]) if "match" in spec else None
        action = self._action(spec["action"][1]) if "action" in spec else None
        path = matched[1] if matched else None
        fields = {
            key: self._fields(spec[key][1], key) if key in spec else FieldMap[str](())
            for key in ("response_fields", "request_fields")
        }
        pii = self._classes(spec["pii"][1]) if "pii" in spec else frozenset()
        rtype, rid = (None, None)
        if "resource" in spec:
            rtype, rid = self._resource(spec["resource"][1], path)
        transaction = self._transaction(spec["transaction"][1]) if "transaction" in spec else None
        if action is not None:
            self._check_transaction(node, action, spec)
        if matched is None or path is None or action is None:
            return None
        if fields["request_fields"] and matched[0] is not None and matched[0] <= _BODILESS:
            self.warn(spec["request_fields"][0], "request_fields on a GET route: GET has no body")
        return Route(
            index=index,
            methods=matched[0],
            path=path,
            action=action,
            resource_type=rtype,
            resource_id=rid,
            response_fields=fields["response_fields"],
            request_fields=fields["request_fields"],
            pii=pii,
            transaction=transaction,
            position=self.errors.position(node),
        )

    def _match(self, node: yaml.Node) -> tuple[frozenset[str] | None, PathTemplate | None] | None:
        spec = self.read.mapping(node, "match", MATCH_KEYS)
        if spec is None:
            return None
        if "path" not in spec:
            self.errors.at(node, "match needs a 'path'")
            return None
        methods = self._methods(spec["method"][1]) if "method" in spec else None
        text = self.read.string(spec["path"][1], "path")
        if text is None:
            return None
        try:
            return methods, PathTemplate.parse(text)
        except TemplateError as exc:
            where = f"(at character {exc.offset + 1})"
            self.errors.at(spec["path"][1], f"bad path template {text!r}: {exc} {where}")
            return methods, None

    def _methods(self, node: yaml.Node) -> frozenset[str] | None:
        """Upper-cased methods (``GET`` brings ``HEAD``); None for ``*`` (every method)."""
        methods: set[str] = set()
        for name, item in self.read.string_list(node, "method", nonempty=True) or []:
            if name == "*":
                return None
            if not TOKEN.fullmatch(name):
                self.errors.at(item, f"{name!r} is not an HTTP method")
            elif name.upper() in methods:
                self.errors.at(item, f"method {name.upper()} is listed twice")
            methods.add(name.upper())
        if "GET" in methods:
            methods.add("HEAD")
        return frozenset(methods)

    def _action(self, node: yaml.Node) -> Action | None:
        return self.read.choice(node, "action", Action, "action")

    def _class(self, node: yaml.Node, what: str) -> str | None:
        name = self.read.string(node, what)
        if name is not None and name not in self.pii:
            known = ", ".join(sorted(self.pii)) or "none defined"
            self.errors.at(node, f"unknown PII class {name!r} in {what} (policy classes: {known})")
            return None
        return name

    def _classes(self, node: yaml.Node) -> frozenset[str]:
        items = self.read.string_list(node, "pii") or []
        return frozenset(
            name for _, item in items if (name := self._class(item, "pii")) is not None
        )

    def _selector(self, node: yaml.Node, what: str) -> Selector | None:
        text = self.read.string(node, what)
        if text is None:
            return None
        try:
            return compile_selector(text)
        except SelectorError as exc:
            where = f"(at character {exc.offset + 1})"
            self.errors.at(node, f"bad selector {text!r} in {what}: {exc} {where}")
            return None

    def _fields(self, node: yaml.Node, what: str) -> FieldMap[str]:
        """``{selector: class}``; two spellings of one selector are an error."""
        fields: list[tuple[Selector, str]] = []
        seen: dict[str, str] = {}
        for _key, key_node, value in self.read.items(node, what):
            selector = self._selector(key_node, what)
            name = self._class(value, what)
            if selector is None or name is None:
                continue
            if selector.normalized in seen:
                other = seen[selector.normalized]
                self.errors.at(key_node, f"{selector.text!r} selects the same field as {other!r}")
                continue
            seen[selector.normalized] = selector.text
            fields.append((selector, name))
        return FieldMap(fields)

    def _resource(
        self, node: yaml.Node, path: PathTemplate | None
    ) -> tuple[str | None, IdTemplate | None]:
        spec = self.read.mapping(node, "resource", RESOURCE_KEYS) or {}
        rtype = self.read.string(spec["type"][1], "resource type") if "type" in spec else None
        if "id" not in spec:
            return rtype, None
        text = self.read.string(spec["id"][1], "resource id")
        if text is None:
            return rtype, None
        try:
            template = IdTemplate.parse(text)
        except ValueError as exc:
            self.errors.at(spec["id"][1], f"resource id: {exc}")
            return rtype, None
        if path is not None:
            for param in template.params:
                if param not in path.params:
                    known = ", ".join(path.params) or "none"
                    self.errors.at(
                        spec["id"][1],
                        f"resource id uses {{{param}}}, not a parameter of {path.text!r}"
                        f" (parameters: {known})",
                    )
        return rtype, template

    def _transaction(self, node: yaml.Node) -> TransactionFields | None:
        spec = self.read.mapping(node, "transaction", TRANSACTION_KEYS)
        if spec is None:
            return None
        if "amount" not in spec:
            self.errors.at(node, "transaction needs an 'amount' selector")
            return None
        selectors: dict[str, Selector | None] = {}
        for key, (_, value) in spec.items():
            selector = self._selector(value, f"transaction {key}")
            if selector is not None and not selector.single:
                self.errors.at(value, f"transaction {key} must select one value (no [*])")
                selector = None
            selectors[key] = selector
        amount = selectors.get("amount")
        if amount is None or any(s is None for s in selectors.values()):
            return None
        return TransactionFields(amount, selectors.get("currency"), selectors.get("payee"))

    def _check_transaction(
        self, node: yaml.Node, action: Action, spec: dict[str, tuple[yaml.Node, yaml.Node]]
    ) -> None:
        if action is Action.TRANSACT and "transaction" not in spec:
            self.errors.at(node, "a transact route needs a 'transaction' (where its amount is)")
        elif action is not Action.TRANSACT and "transaction" in spec:
            self.errors.at(spec["transaction"][0], "a transaction is only for action: transact")

    def _check_order(
        self, route: Route, node: yaml.Node, earlier: list[tuple[Route, yaml.Node]]
    ) -> None:
        """An error when an earlier route takes every request of ``route``; a warning when it
        takes some of them (and ``route`` does not take all of the earlier one's)."""
        for other, _ in earlier:
            if not _methods_overlap(other.methods, route.methods):
                continue
            where = f"route {other.index + 1} ({other.label}, line {_line(other)})"
            if _methods_cover(other.methods, route.methods) and other.path.covers(route.path):
                self.errors.at(node, f"this route can never match: {where} takes all its requests")
                return
            example = other.path.overlap(route.path)
            if example is not None and not route.path.covers(other.path):
                self.warn(node, f"requests such as {example} go to {where} first")


def _methods_cover(outer: frozenset[str] | None, inner: frozenset[str] | None) -> bool:
    return outer is None or (inner is not None and inner <= outer)


def _methods_overlap(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is None or b is None or not a.isdisjoint(b)


def _line(route: Route) -> int:
    return route.position.line if route.position else 0
