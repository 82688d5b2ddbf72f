"""The sections of ``gateway.http`` besides its routes: ``listen``, ``upstream``, ``identity``,
``rate_limit``, ``default``, ``headers``, ``masking``, ``forward_auth``, ``timeouts`` and
``max_body`` (CONTRACT §7).

Each reader records its problems in the :class:`YamlErrors` of its :class:`NodeReader` (with
``FILE:LINE:COL``) and returns None (or the default) for what it could not read; ``config.py``
then rejects the whole configuration.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

import yaml

from piigate.gateway.http.masking import KeepLast, MaskRule, Replace
from piigate.gateway.http.route_config import TOKEN
from piigate.origins import parse_listen
from piigate.policy.durations import parse_duration
from piigate.policy.model import Policy
from piigate.policy.yamlnodes import NodeReader

__all__ = [
    "Default",
    "ForwardAuthConfig",
    "ForwardHeaders",
    "IdentityConfig",
    "Rate",
    "RateLimits",
    "Timeouts",
    "parse_rate",
    "parse_size",
    "read_default",
    "read_forward_auth",
    "read_headers",
    "read_identity",
    "read_listen",
    "read_masking",
    "read_max_body",
    "read_rate_limits",
    "read_timeouts",
    "read_upstream",
    "read_url",
    "read_workers",
]

IDENTITY_KEYS: Final = frozenset({"issuer", "audience", "jwks_url", "roles_claim"})
RATE_KEYS: Final = frozenset({"per_subject", "per_ip", "per_api_key", "per_route", "store"})
HEADER_KEYS: Final = frozenset({"subject", "level"})
FORWARD_AUTH_KEYS: Final = frozenset({"trusted_proxies"})
MASK_KEYS: Final = frozenset({"keep_last", "fixed_width", "replace"})
TIMEOUT_KEYS: Final = frozenset({"connect", "read"})
MAX_TIMEOUT: Final = 3600
# Bodies the gateway reads to decide are held whole in memory: at most this much.
MAX_BODY_LIMIT: Final = 64 * 1024 * 1024
DEFAULT_MAX_BODY: Final = 1024 * 1024
MAX_WORKERS: Final = 64
# Headers the gateway itself sets, strips or reads: the upstream must not get the verified
# subject or level under one of these names.
RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-authenticate",
        "authorization",
        "cookie",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "via",
        "piigate-grant",
    }
)
MAX_RATE_WINDOW: Final = 86400
_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9a-z]+)\s*")
_SIZE = re.compile(r"\s*([0-9]+)\s*(B|KiB|MiB)?\s*")
_SIZE_UNITS: Final = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024 * 1024}


class Default(StrEnum):
    """What happens to a request no route matches."""

    PASS = "pass"  # noqa: S105  # the word, not a password
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    window: int  # seconds


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_subject: Rate | None = None
    per_ip: Rate | None = None
    per_api_key: Rate | None = None
    per_route: Rate | None = None
    store: str | None = None  # a redis:// URL; None: in memory, one gateway node


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the gateway waits for the upstream, in seconds: ``connect`` to open a connection
    (or get one from the pool), ``read`` between two reads of its answer. Past either, the client
    gets a 504 problem."""

    connect: int = 5
    read: int = 30


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """The IdP whose bearer JWTs the gateway accepts (``identity/``'s ``JwtValidator``)."""

    issuer: str
    audience: str
    jwks_url: str
    roles_claim: str = "roles"


@dataclass(frozen=True, slots=True)
class ForwardHeaders:
    """The headers that carry the verified subject and level to the upstream. Whatever a
    client sends under these names must never reach the upstream: only the gateway sets them."""

    subject: str = "PIIGate-Subject"
    level: str = "PIIGate-Level"


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ForwardAuthConfig:
    """Forward-auth (``POST /v1/forward-auth`` of ``piigate serve``): the proxies whose
    ``X-Forwarded-For`` names the client. A request from any other address is the client's own,
    whatever it claims: a client that could name its address would choose its rate limit."""

    trusted_proxies: tuple[IpNetwork, ...] = ()

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


def read_url(read: NodeReader, node: yaml.Node, what: str, schemes: tuple[str, ...]) -> str | None:
    """An absolute URL of one of ``schemes``, with a host, no credentials, query or fragment."""
    text = read.string(node, what)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        parts = None
    shown = " or ".join(f"{s}://" for s in schemes)
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        read.errors.at(node, f"{what} must be a {shown} URL with a host")
        return None
    if parts.username is not None or parts.password is not None:
        read.errors.at(node, f"{what} must not carry credentials")
        return None
    if parts.query or parts.fragment:
        read.errors.at(node, f"{what} must have no query or fragment")
        return None
    return text


def read_upstream(read: NodeReader, node: yaml.Node) -> str | None:
    url = read_url(read, node, "upstream", ("http", "https"))
    return None if url is None else url.rstrip("/")


def read_listen(read: NodeReader, node: yaml.Node) -> tuple[str | None, int | None]:
    text = read.string(node, "listen")
    if text is None:
        return None, None
    try:
        return parse_listen(text)
    except ValueError as exc:
        read.errors.at(node, str(exc))
        return None, None


def read_default(read: NodeReader, node: yaml.Node) -> Default | None:
    text = read.string(node, "default")
    if text is None:
        return None
    try:
        return Default(text)
    except ValueError:
        read.errors.at(node, "default must be pass or deny")
        return None


def read_identity(read: NodeReader, node: yaml.Node) -> IdentityConfig | None:
    spec = read.mapping(node, "identity", IDENTITY_KEYS)
    if spec is None:
        return None
    missing = [key for key in ("issuer", "audience", "jwks_url") if key not in spec]
    if missing:
        read.errors.at(node, f"identity needs {', '.join(missing)}")
        return None
    issuer = read_url(read, spec["issuer"][1], "issuer", ("https", "http"))
    jwks_url = read_url(read, spec["jwks_url"][1], "jwks_url", ("https", "http"))
    audience = read.string(spec["audience"][1], "audience")
    roles = read.string(spec["roles_claim"][1], "roles_claim") if "roles_claim" in spec else "roles"
    if issuer is None or jwks_url is None or not audience or not roles:
        if audience == "" or roles == "":
            read.errors.at(node, "identity: audience and roles_claim must not be empty")
        return None
    return IdentityConfig(issuer, audience, jwks_url, roles)


def parse_rate(value: object) -> Rate:
    """``120/m``, ``50/10s``, ``1000/1h``, ``30/60`` → :class:`Rate`; ValueError otherwise."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("a rate is COUNT/WINDOW, like 120/m, 50/10s or 1000/h")
    count, window_text = int(match.group(1)), match.group(2)
    if window_text in ("s", "m", "h", "d"):
        window_text = "1" + window_text
    try:
        window = parse_duration(window_text)
    except ValueError:
        hint = "use s, m, h, d or a duration like 10s or 15m"
        raise ValueError(f"bad window {window_text!r}: {hint}") from None
    if count < 1 or not 1 <= window <= MAX_RATE_WINDOW:
        raise ValueError("a rate needs a count of at least 1 and a window of 1s to 1d")
    return Rate(count, window)


def read_rate_limits(read: NodeReader, node: yaml.Node) -> RateLimits:
    spec = read.mapping(node, "rate_limit", RATE_KEYS) or {}
    rates: dict[str, Rate | None] = {}
    for key, (_, value) in spec.items():
        if key != "store":
            rates[key] = read.convert(value, f"rate_limit {key}", parse_rate)
    store = None
    if "store" in spec:
        value = spec["store"][1]
        if read.scalar_value(value) != "memory":
            store = read_url(read, value, "rate_limit store", ("redis", "rediss"))
    return RateLimits(**rates, store=store)


def read_headers(read: NodeReader, node: yaml.Node) -> ForwardHeaders:
    spec = read.mapping(node, "headers", HEADER_KEYS) or {}
    names: dict[str, str] = {}
    for key, (_, value) in spec.items():
        name = read.string(value, f"header for the {key}")
        if name is None:
            continue
        if not TOKEN.fullmatch(name):
            read.errors.at(value, f"{name!r} is not a header name")
        elif name.lower() in RESERVED_HEADERS:
            read.errors.at(value, f"{name!r} is a header the gateway sets or strips itself")
        else:
            names[key] = name
    headers = ForwardHeaders(**names)
    if headers.subject.lower() == headers.level.lower():
        read.errors.at(node, "the subject and level headers must differ")
    return headers


def read_masking(read: NodeReader, node: yaml.Node, policy: Policy) -> dict[str, MaskRule]:
    """Per class: ``whole``, ``{replace: TEXT}`` or ``{keep_last: N[, fixed_width: W]}``."""
    masks: dict[str, MaskRule] = {}
    for name, key_node, value in read.items(node, "masking"):
        if name not in policy.pii:
            known = ", ".join(sorted(policy.pii)) or "none defined"
            read.errors.at(key_node, f"unknown PII class {name!r} in masking (classes: {known})")
            continue
        rule = _mask_rule(read, value, name)
        if rule is not None:
            masks[name] = rule
    return masks


def _mask_rule(read: NodeReader, node: yaml.Node, name: str) -> MaskRule | None:
    what = f"the mask of {name!r}"
    if isinstance(node, yaml.ScalarNode):
        if read.scalar_value(node) == "whole":
            return Replace()
        read.errors.at(node, f"{what} must be whole, {{replace: TEXT}} or {{keep_last: N}}")
        return None
    spec = read.mapping(node, what, MASK_KEYS)
    if spec is None:
        return None
    if ("replace" in spec) == ("keep_last" in spec):
        read.errors.at(node, f"{what} needs exactly one of replace or keep_last")
        return None
    if "replace" in spec:
        if "fixed_width" in spec:
            read.errors.at(spec["fixed_width"][0], "fixed_width goes with keep_last")
        text = read.string(spec["replace"][1], "replace")
        if text is not None and not 1 <= len(text) <= 64:
            read.errors.at(spec["replace"][1], "replace must be 1 to 64 characters")
            return None
        return None if text is None else Replace(text)
    last = read.integer(spec["keep_last"][1], "keep_last", high=16)
    width = None
    if "fixed_width" in spec:
        width = read.integer(spec["fixed_width"][1], "fixed_width", low=1, high=64)
        if width is None:
            return None
    return None if last is None else KeepLast(last, width)


def read_forward_auth(read: NodeReader, node: yaml.Node) -> ForwardAuthConfig:
    """``{trusted_proxies: [127.0.0.1, 10.0.0.0/8, "::1"]}``: addresses or networks."""
    spec = read.mapping(node, "forward_auth", FORWARD_AUTH_KEYS) or {}
    networks: list[IpNetwork] = []
    if "trusted_proxies" in spec:
        items = read.string_list(spec["trusted_proxies"][1], "trusted_proxies") or []
        for text, item in items:
            try:
                networks.append(ipaddress.ip_network(text.strip(), strict=True))
            except ValueError:
                read.errors.at(item, f"{text!r} is not an IP address or network (10.0.0.0/8)")
    return ForwardAuthConfig(tuple(networks))


def read_timeouts(read: NodeReader, node: yaml.Node) -> Timeouts:
    """``{connect: 5s, read: 30s}``: durations of 1 s to 1 h (either may be left out)."""
    spec = read.mapping(node, "timeouts", TIMEOUT_KEYS) or {}
    values: dict[str, int] = {}
    for key, (_, value) in spec.items():
        seconds = read.convert(value, f"timeouts {key}", parse_duration)
        if seconds is not None and not 1 <= seconds <= MAX_TIMEOUT:
            read.errors.at(value, f"timeouts {key} must be 1s to 1h")
        elif seconds is not None:
            values[key] = seconds
    return Timeouts(**values)


def parse_size(value: object) -> int:
    """``65536``, ``64KiB``, ``1MiB`` → bytes; ValueError otherwise."""
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match is not None:
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        raise ValueError("a size is bytes, or a number with KiB or MiB (64KiB, 1MiB)")
    if not 1 <= size <= MAX_BODY_LIMIT:
        raise ValueError(f"must be 1 byte to {MAX_BODY_LIMIT // (1024 * 1024)}MiB")
    return size


def read_max_body(read: NodeReader, node: yaml.Node) -> int:
    """The largest request body the gateway reads to decide on (413 beyond)."""
    size = read.convert(node, "max_body", parse_size)
    return DEFAULT_MAX_BODY if size is None else size


def read_workers(read: NodeReader, node: yaml.Node) -> int | None:
    """How many processes serve the gateway (``cli/workers.py``), 1 to ``MAX_WORKERS``."""
    return read.integer(node, "workers", low=1, high=MAX_WORKERS)
