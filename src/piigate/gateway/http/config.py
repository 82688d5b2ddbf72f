"""The ``gateway.http`` configuration: where the gateway listens, what it protects and how.

It lives in the policy file beside the policy (any file with ``version:``), or in a
configuration file whose top-level keys are ``policy``, ``service`` and ``gateway``::

    gateway:
      http:
        listen: 127.0.0.1:8081                # default
        upstream: http://127.0.0.1:9000       # required: http(s)://host[:port][/prefix]
        identity: {issuer: ..., audience: ..., jwks_url: ..., roles_claim: roles}
        rate_limit: {per_subject: 120/m, per_ip: 600/m, per_api_key: 50/10s, per_route: 1000/h,
                     store: redis://127.0.0.1:6379/0}   # store: memory (default) or redis://
        default: pass                         # or deny: a request no route matches is refused
        headers: {subject: PIIGate-Subject, level: PIIGate-Level}   # to the upstream
        forward_auth: {trusted_proxies: [127.0.0.1, 10.0.0.0/8]}     # whose X-Forwarded-For counts
        timeouts: {connect: 5s, read: 30s}    # waiting for the upstream (504 beyond)
        max_body: 1MiB                        # a body read to decide on (413 beyond)
        workers: 1                            # processes sharing the address (cli/workers.py)
        masking: {ssn: {keep_last: 4}, phone: {keep_last: 2, fixed_width: 6},
                  mailing_address: whole, passport: {replace: "[hidden]"}}
        routes: [...]                         # route_config.py

A rate is ``COUNT/WINDOW``: a window is a unit (``s``, ``m``, ``h``, ``d``: one of it) or a
duration (``10s``, ``15m``, or seconds), of at most one day. A timeout is a duration of 1 s to
1 h. ``max_body`` (bytes, or with ``KiB``/``MiB``, at most 64 MiB) bounds the bodies the gateway
reads whole to decide (routes with ``request_fields`` or a ``transaction``); every other body
streams through unread.

An app that guards its own endpoints in process (``piigate.integrations``' middleware) reads the
same section with ``upstream=False``: there is nothing to proxy to, so ``upstream`` may be left
out (and ``listen`` is not used).

Every PII class named (by a route or ``masking``) must be one of the policy's, so the
configuration is read with the loaded policy. Like the policy, it is all or nothing: every
problem is reported, each as ``FILE:LINE:COL: message``, in one :class:`GatewayConfigError`,
and nothing of a file with a problem is used. Warnings (``FILE:LINE:COL: warning: ...``) do
not stop it; they are in :attr:`HttpGatewayConfig.warnings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import yaml

from piigate.errors import PolicyError
from piigate.gateway.http.masking import MaskRule, default_masks
from piigate.gateway.http.route_config import RouteReader
from piigate.gateway.http.routes import Route, RouteMatch, match_route
from piigate.gateway.http.sections import (
    DEFAULT_MAX_BODY,
    Default,
    ForwardAuthConfig,
    ForwardHeaders,
    IdentityConfig,
    Rate,
    RateLimits,
    Timeouts,
    parse_rate,
    read_default,
    read_forward_auth,
    read_headers,
    read_identity,
    read_listen,
    read_masking,
    read_max_body,
    read_rate_limits,
    read_timeouts,
    read_upstream,
    read_workers,
)
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.model import Policy
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_file, compose_text

__all__ = [
    "Default",
    "ForwardAuthConfig",
    "ForwardHeaders",
    "GatewayConfigError",
    "HttpGatewayConfig",
    "IdentityConfig",
    "Rate",
    "RateLimits",
    "Timeouts",
    "find_gateway_config",
    "gateway_section",
    "load_gateway_config",
    "load_gateway_config_text",
    "parse_rate",
    "read_gateway_config",
]

CONFIG_KEYS: Final = frozenset({"policy", "service", "gateway"})
GATEWAY_KEYS: Final = frozenset({"http", "postgres"})
HTTP_KEYS: Final = frozenset(
    {
        "listen",
        "upstream",
        "identity",
        "rate_limit",
        "routes",
        "default",
        "masking",
        "headers",
        "forward_auth",
        "timeouts",
        "max_body",
        "workers",
    }
)
DEFAULT_LISTEN: Final = ("127.0.0.1", 8081)


class GatewayConfigError(PolicyError):
    """A gateway configuration that cannot be used; ``errors`` are ``FILE:LINE:COL`` lines."""

    code = "gateway_config_invalid"
    title = "Invalid gateway configuration"


@dataclass(frozen=True, slots=True)
class HttpGatewayConfig:
    source: str
    upstream: str  # no trailing /; "" when read with upstream=False and none is named
    routes: tuple[Route, ...]
    masks: Mapping[str, MaskRule]  # every PII class of the policy
    listen_host: str = "127.0.0.1"
    listen_port: int = 8081
    identity: IdentityConfig | None = None
    rate_limit: RateLimits = field(default_factory=RateLimits)
    default: Default = Default.PASS
    headers: ForwardHeaders = field(default_factory=ForwardHeaders)
    forward_auth: ForwardAuthConfig = field(default_factory=ForwardAuthConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_body: int = DEFAULT_MAX_BODY
    workers: int = 1
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def match(self, method: str, target: str) -> RouteMatch | None:
        """The route a request takes (``routes.match_route``)."""
        return match_route(self.routes, method, target)


def load_gateway_config(
    path: str, policy: Policy | CompiledPolicy, *, upstream: bool = True
) -> HttpGatewayConfig:
    """``gateway.http`` of the file at ``path`` (at most 1 MiB), checked against ``policy``
    (the loaded policy, or the compiled one in force). ``upstream=False``: the ``upstream`` may
    be left out (an app guarding itself in process)."""
    errors = YamlErrors(path)
    return _loaded(compose_file(path, errors), errors, policy, upstream)


def find_gateway_config(
    path: str, policy: Policy | CompiledPolicy, *, upstream: bool = True
) -> HttpGatewayConfig | None:
    """Like :func:`load_gateway_config`, for a file that may have no ``gateway.http`` section
    (``piigate serve``'s configuration file): None when it has none."""
    errors = YamlErrors(path)
    node = compose_file(path, errors)
    if node is not None and not _has_http(node):
        return None
    return _loaded(node, errors, policy, upstream)


def _has_http(root: yaml.Node) -> bool:
    """``root`` has a ``gateway`` mapping with an ``http`` key (whatever its value)."""

    def value(node: yaml.Node, key: str) -> yaml.Node | None:
        if not isinstance(node, yaml.MappingNode):
            return None
        return next((v for k, v in node.value if getattr(k, "value", None) == key), None)

    gateway = value(root, "gateway")
    return gateway is not None and value(gateway, "http") is not None


def load_gateway_config_text(
    text: str,
    policy: Policy | CompiledPolicy,
    *,
    source: str = "<gateway>",
    upstream: bool = True,
) -> HttpGatewayConfig:
    errors = YamlErrors(source)
    return _loaded(compose_text(text, errors), errors, policy, upstream)


def _loaded(
    node: yaml.Node | None,
    errors: YamlErrors,
    policy: Policy | CompiledPolicy,
    upstream: bool,
) -> HttpGatewayConfig:
    config = (
        read_gateway_config(node, errors, policy, upstream=upstream) if node is not None else None
    )
    if errors or config is None:
        raise GatewayConfigError(errors.messages)
    return config


def read_gateway_config(
    root: yaml.Node, errors: YamlErrors, policy: Policy | CompiledPolicy, *, upstream: bool = True
) -> HttpGatewayConfig | None:
    """The configuration under ``gateway.http`` of ``root`` (a policy file's or a
    configuration file's root), or None with every problem recorded in ``errors``."""
    if isinstance(policy, CompiledPolicy):
        policy = policy.policy
    read = NodeReader(errors)
    node = gateway_section(read, root, "http")
    return None if node is None else _http(read, node, policy, upstream)


def gateway_section(read: NodeReader, root: yaml.Node, name: str) -> yaml.Node | None:
    """``gateway.<name>`` of a policy file's or a configuration file's root, or None with the
    problem recorded (a configuration file's unknown top-level keys are reported too)."""
    errors = read.errors
    top = read.mapping(root, "the file")
    if top is None:
        return None
    if "version" not in top:  # a configuration file, not a policy file: no other keys
        for key, (key_node, _) in top.items():
            if key not in CONFIG_KEYS:
                known = ", ".join(sorted(CONFIG_KEYS))
                errors.at(key_node, f"unknown key {key!r} (expected one of: {known})")
    if "gateway" not in top:
        errors.at(root, f"no 'gateway' section (gateway: {{{name}: ...}})")
        return None
    gateway = read.mapping(top["gateway"][1], "gateway", GATEWAY_KEYS)
    if gateway is None:
        return None
    if name not in gateway:
        errors.at(top["gateway"][1], f"no '{name}' section in gateway")
        return None
    return gateway[name][1]


def _http(
    read: NodeReader, node: yaml.Node, policy: Policy, needs_upstream: bool
) -> HttpGatewayConfig | None:
    spec = read.mapping(node, "gateway.http", HTTP_KEYS)
    if spec is None:
        return None
    errors = read.errors
    warnings: list[str] = []
    upstream = read_upstream(read, spec["upstream"][1]) if "upstream" in spec else None
    if "upstream" not in spec:
        if needs_upstream:
            errors.at(node, "gateway.http needs an 'upstream' (http://host:port)")
        else:
            upstream = ""
    host, port = read_listen(read, spec["listen"][1]) if "listen" in spec else DEFAULT_LISTEN
    routes: tuple[Route, ...] = ()
    if "routes" in spec:
        reader = RouteReader(read, pii=policy.pii, warnings=warnings)
        routes = reader.routes(spec["routes"][1])
    else:
        warnings.append(f"{errors.position(node)}: warning: no routes: every request passes")
    default = read_default(read, spec["default"][1]) if "default" in spec else Default.PASS
    masks = default_masks(policy)
    if "masking" in spec:
        masks.update(read_masking(read, spec["masking"][1], policy))
    identity = read_identity(read, spec["identity"][1]) if "identity" in spec else None
    limits = read_rate_limits(read, spec["rate_limit"][1]) if "rate_limit" in spec else RateLimits()
    headers = read_headers(read, spec["headers"][1]) if "headers" in spec else ForwardHeaders()
    forward_auth = (
        read_forward_auth(read, spec["forward_auth"][1])
        if "forward_auth" in spec
        else ForwardAuthConfig()
    )
    timeouts = read_timeouts(read, spec["timeouts"][1]) if "timeouts" in spec else Timeouts()
    max_body = read_max_body(read, spec["max_body"][1]) if "max_body" in spec else DEFAULT_MAX_BODY
    workers = read_workers(read, spec["workers"][1]) if "workers" in spec else 1
    if workers is not None and workers > 1 and limits.store is None and limits != RateLimits():
        errors.at(
            spec["workers"][1],
            f"workers: {workers} needs the rate limits counted in Redis "
            "(rate_limit: {store: redis://...}): each worker would count alone",
        )
    if errors or upstream is None or host is None or port is None or default is None:
        return None
    if workers is None:
        return None
    return HttpGatewayConfig(
        source=errors.file,
        upstream=upstream,
        routes=routes,
        masks=masks,
        listen_host=host,
        listen_port=port,
        identity=identity,
        rate_limit=limits,
        default=default,
        headers=headers,
        forward_auth=forward_auth,
        timeouts=timeouts,
        max_body=max_body,
        workers=workers,
        warnings=tuple(warnings),
    )
