"""Routes: which configured route a request takes, and the engine's request it makes.

:func:`match_route` tries the routes in configuration order; the first whose method and path
template match wins (``paths.py`` says how a path is read), as sent or, for a template whose
last segment is literal, with an extension on it (``/customers.json`` takes the route of
``/customers``, as a format suffix does in Rails). A route for ``GET`` answers ``HEAD``
too (a ``HEAD`` answer tells as much about whether access is allowed as a ``GET``'s).

:func:`route_request` then builds what the engine decides on, in the core's own vocabulary:
the route's :class:`~piigate.model.Action`, its :class:`~piigate.model.Resource` (the id
rendered from the path parameters), the PII classes the request touches and, for ``transact``,
the :class:`~piigate.model.Transaction`; :meth:`RoutedRequest.access_request` adds who asks and
how they authenticated, which the edge knows. The PII classes are the classes of the route's
``request_fields`` present in the request's JSON body (a field present with ``null`` counts:
it erases the value), its explicit ``pii`` and, on a ``read`` route, the classes of its
``response_fields``. On a route of another action the answer's ``response_fields`` are read
all the same: :meth:`RoutedRequest.answer_reading` is that read, decided on its own, whose
verdict masks the answer (an update that answers with the whole record must not show what the
caller may not read).

The body is the parsed JSON document, :data:`Body.ABSENT` when the request has none, or
:data:`Body.UNREADABLE` when it has one that is not JSON: then every class of
``request_fields`` counts as touched (fail closed). Parse it exactly: with ``parse_float=
decimal.Decimal`` (a float would round a large amount) and duplicate keys refused (the upstream
may read the other one).

Errors (``BadRequest``) name the field, never its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final

from pydantic import ValidationError

from piigate.decision_request import TransactionIn, first_error
from piigate.errors import BadRequest
from piigate.gateway.http.paths import PARAM, PathTemplate, split_path
from piigate.gateway.http.selectors import FieldMap, Selector
from piigate.model import (
    AccessRequest,
    Action,
    Context,
    Resource,
    RiskAssessment,
    SessionAuth,
    Subject,
    Transaction,
)
from piigate.policy.model import Position

__all__ = [
    "MAX_ID_LENGTH",
    "Body",
    "IdTemplate",
    "Route",
    "RouteMatch",
    "RoutedRequest",
    "TransactionFields",
    "match_route",
    "route_request",
]

# The engine's limits on what the decision API accepts (``decision_request.py``).
MAX_ID_LENGTH: Final = 255
_AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NO_SESSION: Final = SessionAuth()
_NO_CONTEXT: Final = Context()


class Body(Enum):
    """What stands for a request body that is not a JSON document."""

    ABSENT = "absent"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class IdTemplate:
    """A resource id made from path parameters: ``"{id}"``, ``"acct-{id}"``."""

    text: str

    @classmethod
    def parse(cls, text: str) -> IdTemplate:
        if "{" in PARAM.sub("", text) or "}" in PARAM.sub("", text):
            raise ValueError("a placeholder is {name}, with a letter or _ first")
        return cls(text)

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(m.group(1) for m in PARAM.finditer(self.text))

    def render(self, params: Mapping[str, str]) -> str:
        return PARAM.sub(lambda m: params[m.group(1)], self.text)


@dataclass(frozen=True, slots=True)
class TransactionFields:
    """Where a ``transact`` request's body holds the transaction (single-value selectors)."""

    amount: Selector
    currency: Selector | None = None
    payee: Selector | None = None


@dataclass(frozen=True, slots=True)
class Route:
    index: int
    # Upper case; ``GET`` brings ``HEAD``; None: every method.
    methods: frozenset[str] | None
    path: PathTemplate
    action: Action
    resource_type: str | None = None
    resource_id: IdTemplate | None = None
    response_fields: FieldMap[str] = field(default_factory=lambda: FieldMap(()))
    request_fields: FieldMap[str] = field(default_factory=lambda: FieldMap(()))
    pii: frozenset[str] = frozenset()
    transaction: TransactionFields | None = None
    position: Position | None = None

    @property
    def reads_body(self) -> bool:
        """The request's body decides something (its fields or its transaction)."""
        return bool(self.request_fields) or self.transaction is not None

    @property
    def label(self) -> str:
        methods = "*" if self.methods is None else ",".join(sorted(self.methods))
        return f"{methods} {self.path}"


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    params: Mapping[str, str]


def match_route(routes: Sequence[Route], method: str, target: str) -> RouteMatch | None:
    """The first route matching ``method`` and the path of ``target`` (a query is ignored);
    BadRequest when the path is ambiguous (``paths.split_path``)."""
    segments = split_path(target)
    method = method.upper()
    suffixed = bool(segments) and "." in segments[-1]
    for route in routes:
        if route.methods is not None and method not in route.methods:
            continue
        params = route.path.match(segments)
        if params is None and suffixed and route.path.ends_literal:
            params = route.path.match(segments, suffixed=True)  # /customers.json
        if params is not None:
            return RouteMatch(route, params)
    return None


@dataclass(frozen=True, slots=True)
class RoutedRequest:
    """What a routed request asks the engine, before who asks is known."""

    route: Route
    params: Mapping[str, str]
    action: Action
    resource: Resource
    pii: frozenset[str]
    transaction: Transaction | None = None

    def access_request(
        self,
        *,
        subject: Subject,
        session: SessionAuth = _NO_SESSION,
        context: Context = _NO_CONTEXT,
        grants: tuple[str, ...] = (),
        binding_fields: Mapping[str, str] | None = None,
        risk: RiskAssessment | None = None,
    ) -> AccessRequest:
        return AccessRequest(
            subject=subject,
            action=self.action,
            pii=self.pii,
            resource=self.resource,
            session=session,
            context=context,
            transaction=self.transaction,
            grants=grants,
            binding_fields=binding_fields if binding_fields is not None else {},
            risk=risk,
        )

    def answer_reading(self, request: AccessRequest) -> AccessRequest | None:
        """The read of the answer's PII that ``request`` (this route's, made by
        :meth:`access_request`) brings back, when the route is not a ``read`` and names PII in
        its answer (``response_fields``); None otherwise: a read route's own decision covers it."""
        labels = self.route.response_fields.labels
        if self.action is Action.READ or not labels:
            return None
        return replace(request, action=Action.READ, pii=labels, transaction=None)


def route_request(match: RouteMatch, body: object = Body.ABSENT) -> RoutedRequest:
    """The engine's view of a matched request whose body is ``body`` (see the module's doc)."""
    route = match.route
    resource = Resource()
    if route.resource_type is not None or route.resource_id is not None:
        rid = route.resource_id.render(match.params) if route.resource_id else None
        if rid is not None and len(rid) > MAX_ID_LENGTH:
            raise BadRequest(f"the resource id is over {MAX_ID_LENGTH} characters", field="path")
        resource = Resource(route.resource_type, rid)
    pii = route.pii | _written_classes(route, body)
    if route.action is Action.READ:
        pii |= route.response_fields.labels
    transaction = None if route.transaction is None else _transaction(route.transaction, body)
    return RoutedRequest(route, match.params, route.action, resource, pii, transaction)


def _written_classes(route: Route, body: object) -> frozenset[str]:
    fields = route.request_fields
    if not fields or body is Body.ABSENT:
        return frozenset()
    if body is Body.UNREADABLE:
        return fields.labels
    return frozenset(label for _, labels in fields.find(body) for label in labels)


def _transaction(fields: TransactionFields, body: object) -> Transaction:
    """The transaction in ``body``, read by the model that reads the decision API's (the same
    limits), from values taken as the upstream would: an amount is a JSON number or a string
    of digits with an optional fraction (no sign, exponent or spaces)."""
    if isinstance(body, Body):
        raise BadRequest("a transfer needs a JSON body", field="body")
    amount = _one(fields.amount, body)
    if amount is None:
        raise BadRequest("the request body has no transaction amount", field=fields.amount.text)
    if isinstance(amount, bool) or (isinstance(amount, str) and not _AMOUNT_TEXT.fullmatch(amount)):
        raise BadRequest("the transaction amount must be a number", field=fields.amount.text)
    currency = _one(fields.currency, body)
    payee = _one(fields.payee, body)
    if isinstance(payee, int) and not isinstance(payee, bool):
        payee = str(payee)  # an account number sent as a JSON number
    data = {
        "amount": amount,
        "currency": currency.upper() if isinstance(currency, str) else currency,
        "payee": payee,
    }
    try:
        txn = TransactionIn.model_validate(data)
    except ValidationError as exc:
        where = {"amount": fields.amount, "currency": fields.currency, "payee": fields.payee}
        selector = where.get(str(exc.errors()[0]["loc"][0]))
        raise BadRequest(
            f"transaction {first_error(exc)}", field=str(selector or "transaction")
        ) from None
    return Transaction(txn.amount + 0, txn.currency, txn.payee)  # + 0: -0 is 0


def _one(selector: Selector | None, body: object) -> object:
    """The value of a single-value selector, None when absent (or null)."""
    if selector is None:
        return None
    found = selector.find(body)
    return found[0].value if found else None
