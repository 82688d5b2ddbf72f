"""Service configuration: a YAML file (``--config``) and ``PIIGATE_*`` environment variables.

The file is either a policy file (it has ``version:``) that may carry a ``service:`` section, or a
configuration file with ``policy: path/to/policy.yaml`` and ``service:``. Environment variables win
over the file, so one image can be configured per deployment.

| variable | meaning |
| --- | --- |
| ``PIIGATE_POLICY`` | policy file |
| ``PIIGATE_DATA_DIR`` | SQLite and, unless given, the master key (default ``./.piigate``) |
| ``PIIGATE_MASTER_KEY`` / ``_FILE`` | the key that seals the store's keys (``crypto/masterkey``) |
| ``PIIGATE_DATABASE_URL`` | ``postgresql://...`` for the production store |
| ``PIIGATE_PUBLIC_URL`` | the URL clients reach; default ``http://HOST:PORT``, the address served |
| ``PIIGATE_ALLOWED_ORIGINS`` | more origins whose pages may use the session cookie (a, b) |
| ``PIIGATE_RETURN_TO_ORIGINS`` | origins the step-up page may send the browser back to (a, b) |
| ``PIIGATE_OIDC_ISSUER`` / ``_AUDIENCE`` / ``_JWKS_URL`` | bearer JWT validation |
| ``PIIGATE_OIDC_CLIENT_ID`` / ``_SECRET`` / ``_SECRET_FILE`` | the console's sign-in at the IdP |
| ``PIIGATE_LOG_FORMAT`` | ``json`` (default) or ``console`` |
| ``PIIGATE_SMS_*``, ``PIIGATE_TWILIO_*`` | the SMS provider (``factors/sms/settings.py``) |
| ``PIIGATE_PUSH_RELAY_URL`` | where to POST ``{"device_id", "push_id"}`` when a push waits |
| ``PIIGATE_RISK_*`` | the risk engine's geolocation (``risk/geo_settings.py``) |
| ``PIIGATE_ALERTS_*`` | where alerts go: webhook, JSON lines, syslog (``audit/sink_settings.py``) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import yaml

from piigate.audit.sink_settings import AlertSettings, alerts_from_env, alerts_from_yaml
from piigate.crypto.masterkey import DEFAULT_FILE_NAME, MASTER_KEY_ENV, MasterKeySpec
from piigate.crypto.secret import Secret
from piigate.errors import PolicyError
from piigate.factors.sms.settings import SmsSettings, sms_from_env, sms_from_yaml
from piigate.oidc_settings import (
    OidcClientSettings,
    idp_url_problem,
    oidc_client_from_env,
    oidc_client_from_yaml,
)
from piigate.origins import is_loopback, parse_listen, served_url, web_origin
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_file
from piigate.risk.geo_settings import GeoSettings, geo_from_env, geo_from_yaml

__all__ = ["ConfigError", "IdentitySettings", "Settings", "load_settings"]

AUDIT_WRITERS: Final = ("process", "thread")
SERVICE_KEYS: Final = frozenset(
    {
        "data_dir",
        "database_url",
        "redis_url",
        "public_url",
        "listen",
        "identity",
        "max_body_bytes",
        "log_format",
        "session_ttl",
        "audit_writer",
        "sms",
        "push_relay_url",
        "master_key_file",
        "allowed_origins",
        "risk",
        "alerts",
        "console",
    }
)
IDENTITY_KEYS: Final = frozenset({"issuer", "audience", "jwks_url", "roles_claim", "console"})
CONSOLE_KEYS: Final = frozenset({"return_to_origins"})
CONFIG_KEYS: Final = frozenset({"policy", "service", "gateway"})


class ConfigError(PolicyError):
    code = "config_invalid"
    title = "Invalid configuration"


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    issuer: str
    audience: str
    jwks_url: str
    roles_claim: str = "roles"
    # The console's sign-in at this provider (OIDC authorization code + PKCE); None: none.
    console: OidcClientSettings | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    policy_path: str | None = None
    config_path: str | None = None
    data_dir: Path = Path(".piigate")
    database_url: str | None = None
    redis_url: str | None = None
    # The URL users and devices reach piigate at. Unless configured (``public_url_configured``),
    # it is the address served (``host``, ``port``): see ``serving_on``.
    public_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url_configured: bool = False
    identity: IdentitySettings | None = None
    max_body_bytes: int = 64 * 1024
    log_format: str = "json"
    session_ttl: int = 8 * 3600
    sms: SmsSettings = field(default_factory=SmsSettings)
    # Where the risk engine's geolocation comes from (the signal weights are the policy's).
    risk: GeoSettings = field(default_factory=GeoSettings)
    # Where raised alerts go besides the console: webhook, JSON lines, syslog.
    alerts: AlertSettings = field(default_factory=AlertSettings)
    # A relay that wakes push devices (ids only, never PII); devices also poll without it.
    push_relay_url: str | None = None
    # Where the audit group commit runs: "process" (a child process, off the server's GIL and
    # event loop) or "thread" (the store's writer thread in the server).
    audit_writer: str = "process"
    # The master key (PIIGATE_MASTER_KEY only, never in a file of settings), or a file holding it.
    master_key: Secret[str] | None = None
    master_key_file: Path | None = None
    # Origins besides the public URL's whose pages may send cookie-authenticated requests
    # (``scheme://host[:port]``, as browsers send them in ``Origin``).
    allowed_origins: tuple[str, ...] = ()
    # Origins besides the public URL's that the console's step-up page may send the browser
    # back to (``return_to``), as ``scheme://host[:port]``.
    return_to_origins: tuple[str, ...] = ()
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'piigate.db').resolve()}"

    def master_key_spec(self) -> MasterKeySpec:
        """Where this node's master key comes from (default: ``DATA_DIR/master.key``)."""
        return MasterKeySpec(
            default_file=self.data_dir / DEFAULT_FILE_NAME,
            value=self.master_key,
            file=self.master_key_file,
        )

    @property
    def issuer(self) -> str:
        """The ``iss`` of grants this deployment signs."""
        return self.public_url.rstrip("/")

    @property
    def public_url_guessed(self) -> bool:
        """The public URL is derived from a listen address that is not loopback, so it is
        probably not the URL clients reach (``0.0.0.0``, or a host behind a proxy)."""
        return not self.public_url_configured and not is_loopback(self.host)

    def serving_on(self, host: str | None = None, port: int | None = None) -> Settings:
        """These settings listening on ``host:port`` (the current ones when None); a public URL
        that was not configured is that address."""
        host = self.host if host is None else host
        port = self.port if port is None else port
        url = self.public_url if self.public_url_configured else served_url(host, port)
        return replace(self, host=host, port=port, public_url=url)


def load_settings(
    config_path: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    settings = Settings()
    if config_path is not None:
        settings = _from_file(config_path)
    return _from_env(settings, env).serving_on()


def _from_file(path: str) -> Settings:
    errors = YamlErrors(path)
    read = NodeReader(errors)
    root = compose_file(path, errors)
    if root is None:
        raise ConfigError(errors.messages)
    top = read.mapping(root, "the configuration")
    if top is None:
        raise ConfigError(errors.messages)
    base = Path(path).resolve().parent
    settings = Settings(config_path=path)
    if "version" in top:
        settings = replace(settings, policy_path=path)  # a policy file with a service section
    else:
        for key, (key_node, _) in top.items():
            if key not in CONFIG_KEYS:
                errors.at(
                    key_node, f"unknown key {key!r} (expected one of: policy, service, gateway)"
                )
        if "policy" in top:
            policy = read.string(top["policy"][1], "policy")
            if policy is not None:
                settings = replace(settings, policy_path=str(base / policy))
    if "service" in top:
        settings = _service(read, top["service"][1], settings, base)
    if errors:
        raise ConfigError(errors.messages)
    return settings


def _service(read: NodeReader, node: yaml.Node, settings: Settings, base: Path) -> Settings:
    spec = read.mapping(node, "service", SERVICE_KEYS) or {}
    values: dict[str, object] = {}
    for key in (
        "database_url",
        "redis_url",
        "public_url",
        "log_format",
        "push_relay_url",
        "audit_writer",
    ):
        if key in spec:
            values[key] = read.string(spec[key][1], key)
    for key in ("data_dir", "master_key_file"):
        if key in spec:
            text = read.string(spec[key][1], key)
            if text is not None:
                values[key] = base / text
    if "listen" in spec:
        text = read.string(spec["listen"][1], "listen")
        if text is not None:
            try:
                values["host"], values["port"] = parse_listen(text, default_host="127.0.0.1")
            except ValueError as exc:
                read.errors.at(spec["listen"][1], str(exc))
    for key in ("max_body_bytes", "session_ttl"):
        if key in spec:
            values[key] = read.integer(spec[key][1], key, low=1)
    if "identity" in spec:
        values["identity"] = _identity(read, spec["identity"][1], base)
    if "sms" in spec:
        values["sms"] = sms_from_yaml(read, spec["sms"][1])
    if "allowed_origins" in spec:
        values["allowed_origins"] = _yaml_origins(read, spec["allowed_origins"][1])
    if "console" in spec:
        console = read.mapping(spec["console"][1], "console", CONSOLE_KEYS) or {}
        if "return_to_origins" in console:
            node = console["return_to_origins"][1]
            values["return_to_origins"] = _yaml_origins(read, node, "return_to_origins")
    if "risk" in spec:
        values["risk"] = geo_from_yaml(read, spec["risk"][1], base)
    if "alerts" in spec:
        values["alerts"] = alerts_from_yaml(read, spec["alerts"][1], base)
    if "log_format" in values and values["log_format"] not in ("json", "console"):
        read.errors.at(spec["log_format"][1], "log_format must be json or console")
    if "audit_writer" in values and values["audit_writer"] not in AUDIT_WRITERS:
        read.errors.at(spec["audit_writer"][1], "audit_writer must be process or thread")
    clean = {k: v for k, v in values.items() if v is not None}
    if "public_url" in clean:
        clean["public_url_configured"] = True
    return replace(settings, **clean)  # type: ignore[arg-type]


def _identity(read: NodeReader, node: yaml.Node, base: Path) -> IdentitySettings | None:
    ident = read.mapping(node, "identity", IDENTITY_KEYS) or {}
    missing = [k for k in ("issuer", "audience", "jwks_url") if k not in ident]
    if missing:
        read.errors.at(node, f"identity needs {', '.join(missing)}")
        return None
    fields = {k: read.string(v[1], k) for k, v in ident.items() if k != "console"}
    console = None
    if "console" in ident:
        console = oidc_client_from_yaml(read, ident["console"][1], base)
        problem = idp_url_problem(fields["issuer"] or "")
        if fields["issuer"] is not None and problem is not None:
            read.errors.at(ident["issuer"][1], f"identity.issuer {problem}")
    if any(v is None for v in fields.values()) or ("console" in ident and console is None):
        return None
    return IdentitySettings(**fields, console=console)  # type: ignore[arg-type]


def _yaml_origins(
    read: NodeReader, node: yaml.Node, key: str = "allowed_origins"
) -> tuple[str, ...] | None:
    items = read.string_list(node, key)
    if items is None:
        return None
    origins = []
    for text, item in items:
        try:
            origins.append(web_origin(text, bare=True))
        except ValueError as exc:
            read.errors.at(item, f"{key}: {text!r} {exc}")
    return tuple(origins)


def _env_origins(text: str, name: str = "PIIGATE_ALLOWED_ORIGINS") -> tuple[str, ...]:
    origins = []
    for part in text.replace(",", " ").split():
        try:
            origins.append(web_origin(part, bare=True))
        except ValueError as exc:
            raise ConfigError([f"{name}: {part!r} {exc}"]) from None
    return tuple(origins)


def _from_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    values: dict[str, object] = {}
    if env.get("PIIGATE_POLICY"):
        values["policy_path"] = env["PIIGATE_POLICY"]
    if env.get("PIIGATE_DATA_DIR"):
        values["data_dir"] = Path(env["PIIGATE_DATA_DIR"])
    for key in ("database_url", "redis_url", "public_url", "log_format", "push_relay_url"):
        name = f"PIIGATE_{key.upper()}"
        if env.get(name):
            values[key] = env[name]
    if "public_url" in values:
        values["public_url_configured"] = True
    master_key, master_key_file = env.get(MASTER_KEY_ENV), env.get("PIIGATE_MASTER_KEY_FILE")
    if master_key and master_key_file:
        raise ConfigError([f"set {MASTER_KEY_ENV} or PIIGATE_MASTER_KEY_FILE, not both"])
    if master_key:
        values["master_key"] = Secret(master_key)
    if master_key_file:
        values["master_key_file"] = Path(master_key_file)
    writer = env.get("PIIGATE_AUDIT_WRITER")
    if writer:
        if writer not in AUDIT_WRITERS:
            raise ConfigError(["PIIGATE_AUDIT_WRITER must be process or thread"])
        values["audit_writer"] = writer
    values["identity"] = _env_identity(settings.identity, env)
    if env.get("PIIGATE_ALLOWED_ORIGINS"):
        values["allowed_origins"] = _env_origins(env["PIIGATE_ALLOWED_ORIGINS"])
    if env.get("PIIGATE_RETURN_TO_ORIGINS"):
        values["return_to_origins"] = _env_origins(
            env["PIIGATE_RETURN_TO_ORIGINS"], "PIIGATE_RETURN_TO_ORIGINS"
        )
    values["sms"] = sms_from_env(settings.sms, env)
    values["risk"] = geo_from_env(settings.risk, env)
    values["alerts"] = alerts_from_env(settings.alerts, env)
    return replace(settings, **values)  # type: ignore[arg-type]


def _env_identity(
    identity: IdentitySettings | None, env: Mapping[str, str]
) -> IdentitySettings | None:
    """The identity provider with ``PIIGATE_OIDC_*`` on top (the file's other settings kept)."""
    issuer = env.get("PIIGATE_OIDC_ISSUER")
    if issuer:
        audience = env.get("PIIGATE_OIDC_AUDIENCE", "")
        jwks = env.get("PIIGATE_OIDC_JWKS_URL", "")
        if not audience or not jwks:
            raise ConfigError(
                ["PIIGATE_OIDC_ISSUER needs PIIGATE_OIDC_AUDIENCE and PIIGATE_OIDC_JWKS_URL too"]
            )
        known = identity or IdentitySettings(issuer, audience, jwks)
        identity = replace(known, issuer=issuer, audience=audience, jwks_url=jwks)
    try:
        console = oidc_client_from_env(identity.console if identity else None, env)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    if console is None:
        return identity
    if identity is None:
        raise ConfigError(["PIIGATE_OIDC_CLIENT_ID needs service.identity or PIIGATE_OIDC_*"])
    problem = idp_url_problem(identity.issuer)
    if problem is not None:
        raise ConfigError([f"the identity provider's issuer {problem}"])
    return replace(identity, console=console)
