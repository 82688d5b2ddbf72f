"""The ``gateway.postgres`` configuration: where the gateway listens, the database behind it,
and which columns hold PII::

    gateway:
      postgres:
        listen: 127.0.0.1:6432                 # default
        upstream: postgresql://piigate_svc@127.0.0.1:5432/app   # required: its own credential
        approval_wait: 60s                     # how long a statement waits for a step-up (0-10m)
        catalog: {public.customers: {ssn: ssn, phone: phone}}   # or catalog_file: catalog.yaml
        masking: {ssn: {keep_last: 4}}         # as gateway.http's; defaults per class
        tls: {cert: server.crt, key: server.key}   # TLS for clients (else SSLRequest gets N)
        identity: {issuer: ..., audience: ..., jwks_url: ...}   # IdP JWTs as passwords
        public_url: https://piigate.example.com   # where step-up links point (else the service's)
        workers: 1                             # processes sharing the address (cli/workers.py)

The upstream password may be left out of the URL and given in ``PIIGATE_PG_UPSTREAM_PASSWORD``
(it is never logged: :attr:`PostgresGatewayConfig.upstream_display` hides it). A relative
``catalog_file`` or TLS path is read from the configuration file's directory.

Like the HTTP section, it is all or nothing: every problem is reported as ``FILE:LINE:COL:
message`` in one ``GatewayConfigError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

import yaml

from piigate.gateway.http.config import GatewayConfigError, gateway_section
from piigate.gateway.http.masking import MaskRule, default_masks
from piigate.gateway.http.sections import (
    IdentityConfig,
    read_identity,
    read_listen,
    read_masking,
    read_url,
    read_workers,
)
from piigate.gateway.postgres.catalog import Catalog, read_catalog
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.durations import parse_duration
from piigate.policy.model import Policy
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_file, compose_text

__all__ = [
    "DEFAULT_LISTEN",
    "PostgresGatewayConfig",
    "TlsConfig",
    "UpstreamDsn",
    "load_postgres_config",
    "load_postgres_config_text",
    "parse_upstream",
]

PG_KEYS: Final = frozenset(
    {
        "listen",
        "upstream",
        "approval_wait",
        "catalog",
        "catalog_file",
        "masking",
        "tls",
        "identity",
        "public_url",
        "workers",
    }
)
TLS_KEYS: Final = frozenset({"cert", "key"})
DEFAULT_LISTEN: Final = ("127.0.0.1", 6432)
MAX_APPROVAL_WAIT: Final = 600
PASSWORD_ENV: Final = "PIIGATE_PG_UPSTREAM_PASSWORD"  # noqa: S105 (the variable's name)


@dataclass(frozen=True, slots=True)
class UpstreamDsn:
    host: str
    port: int
    user: str
    database: str
    password: str | None = field(default=None, repr=False)

    def display(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class PostgresGatewayConfig:
    source: str
    upstream: UpstreamDsn
    catalog: Catalog
    masks: Mapping[str, MaskRule]  # every PII class of the policy
    listen_host: str = DEFAULT_LISTEN[0]
    listen_port: int = DEFAULT_LISTEN[1]
    approval_wait: float = 60.0
    tls: TlsConfig | None = None
    identity: IdentityConfig | None = None
    public_url: str | None = None
    workers: int = 1

    @property
    def upstream_display(self) -> str:
        return self.upstream.display()


def parse_upstream(text: str, env: Mapping[str, str] | None = None) -> UpstreamDsn:
    """``postgresql://user[:password]@host[:port]/database``; ValueError with a message that
    never repeats the password."""
    env = os.environ if env is None else env
    parts = urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("upstream must be a postgresql://user@host:port/database URL")
    if not parts.hostname or not parts.username:
        raise ValueError("upstream needs a user and a host (postgresql://user@host/database)")
    if parts.query or parts.fragment:
        raise ValueError("upstream takes no query or fragment")
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ValueError("upstream has a bad port") from exc
    database = unquote(parts.path.lstrip("/")) or unquote(parts.username)
    password = unquote(parts.password) if parts.password else env.get(PASSWORD_ENV) or None
    return UpstreamDsn(parts.hostname, port, unquote(parts.username), database, password)


def load_postgres_config(path: str, policy: Policy | CompiledPolicy) -> PostgresGatewayConfig:
    """``gateway.postgres`` of the file at ``path``, checked against ``policy``."""
    errors = YamlErrors(path)
    node = compose_file(path, errors)
    base = os.path.dirname(os.path.abspath(path))
    return _loaded(node, errors, policy, base)


def load_postgres_config_text(
    text: str, policy: Policy | CompiledPolicy, *, source: str = "<gateway>", base: str = "."
) -> PostgresGatewayConfig:
    errors = YamlErrors(source)
    return _loaded(compose_text(text, errors), errors, policy, base)


def _loaded(
    node: yaml.Node | None, errors: YamlErrors, policy: Policy | CompiledPolicy, base: str
) -> PostgresGatewayConfig:
    if isinstance(policy, CompiledPolicy):
        policy = policy.policy
    config = _read(node, errors, policy, base) if node is not None else None
    if errors or config is None:
        raise GatewayConfigError(errors.messages)
    return config


def _read(
    root: yaml.Node, errors: YamlErrors, policy: Policy, base: str
) -> PostgresGatewayConfig | None:
    read = NodeReader(errors)
    node = gateway_section(read, root, "postgres")
    return None if node is None else _postgres(read, node, policy, base, errors.file)


def _postgres(
    read: NodeReader, node: yaml.Node, policy: Policy, base: str, source: str
) -> PostgresGatewayConfig | None:
    spec = read.mapping(node, "gateway.postgres", PG_KEYS)
    if spec is None:
        return None
    errors = read.errors
    upstream = None
    if "upstream" not in spec:
        errors.at(node, "gateway.postgres needs an 'upstream' (postgresql://user@host/db)")
    else:
        upstream = read.convert(spec["upstream"][1], "upstream", _upstream)
    host, port = read_listen(read, spec["listen"][1]) if "listen" in spec else DEFAULT_LISTEN
    wait = 60
    if "approval_wait" in spec:
        value = spec["approval_wait"][1]
        seconds = read.convert(value, "approval_wait", parse_duration)
        if seconds is not None and seconds > MAX_APPROVAL_WAIT:
            errors.at(value, "approval_wait must be at most 10m")
        elif seconds is not None:
            wait = seconds
    catalog = _catalog(read, node, spec, policy, base)
    masks = default_masks(policy)
    if "masking" in spec:
        masks.update(read_masking(read, spec["masking"][1], policy))
    tls = _tls(read, spec["tls"][1], base) if "tls" in spec else None
    identity = read_identity(read, spec["identity"][1]) if "identity" in spec else None
    public_url = None
    if "public_url" in spec:
        public_url = read_url(read, spec["public_url"][1], "public_url", ("http", "https"))
    workers = read_workers(read, spec["workers"][1]) if "workers" in spec else 1
    if upstream is None or host is None or port is None or catalog is None or workers is None:
        return None
    return PostgresGatewayConfig(
        source=source,
        upstream=upstream,
        catalog=catalog,
        masks=masks,
        listen_host=host,
        listen_port=port,
        approval_wait=float(wait),
        tls=tls,
        identity=identity,
        public_url=None if public_url is None else public_url.rstrip("/"),
        workers=workers,
    )


def _upstream(value: object) -> UpstreamDsn:
    if not isinstance(value, str):
        raise ValueError("upstream must be a postgresql:// URL")
    return parse_upstream(value)


def _catalog(
    read: NodeReader,
    node: yaml.Node,
    spec: dict[str, tuple[yaml.Node, yaml.Node]],
    policy: Policy,
    base: str,
) -> Catalog | None:
    if ("catalog" in spec) == ("catalog_file" in spec):
        read.errors.at(node, "gateway.postgres needs exactly one of catalog or catalog_file")
        return None
    if "catalog" in spec:
        return read_catalog(read, spec["catalog"][1], policy)
    name = read.string(spec["catalog_file"][1], "catalog_file")
    if name is None:
        return None
    path = os.path.join(base, name)
    file_errors = YamlErrors(path)
    root = compose_file(path, file_errors)
    catalog = None
    if root is not None:
        catalog = read_catalog(NodeReader(file_errors), root, policy)
    if file_errors:  # the file's own positions, then where it was named
        read.errors.messages.extend(file_errors.messages)
        read.errors.at(spec["catalog_file"][1], "the catalog file has problems (above)")
        return None
    return catalog


def _tls(read: NodeReader, node: yaml.Node, base: str) -> TlsConfig | None:
    spec = read.mapping(node, "tls", TLS_KEYS)
    if spec is None:
        return None
    paths: dict[str, str] = {}
    for key in ("cert", "key"):
        if key not in spec:
            read.errors.at(node, f"tls needs {key}")
            continue
        text = read.string(spec[key][1], f"tls {key}")
        if text is None:
            continue
        path = os.path.join(base, text)
        if not os.path.isfile(path):
            read.errors.at(spec[key][1], f"tls {key}: no such file {text!r}")
            continue
        paths[key] = path
    if len(paths) != 2:
        return None
    return TlsConfig(paths["cert"], paths["key"])
