"""Where alerts are sent besides the console: the ``service.alerts`` section of the configuration
file and the ``PIIGATE_ALERTS_*`` environment variables (read by ``piigate.config``).

```yaml
service:
  alerts:
    webhook:
      url: https://hooks.example/piigate          # https, or http on the loopback interface
      secret_file: /run/secrets/piigate-alerts    # or PIIGATE_ALERTS_WEBHOOK_SECRET(_FILE)
      timeout: 10                                 # seconds per attempt
      max_attempts: 8                             # then the alert is given up (and counted)
      queue: 1000                                 # alerts waiting; when full the oldest goes
    jsonl:
      path: /var/log/piigate/alerts.jsonl         # or "-" for standard output
    syslog:
      address: udp://127.0.0.1:514                # tcp://HOST:PORT, or a local socket /dev/log
      facility: auth                              # auth, authpriv, daemon, user, local0..local7
```

The webhook's HMAC key is never written in the configuration file itself: it comes from a file
of its own (``secret_file``, relative paths from the configuration file's directory) or from
the environment, and is held as a :class:`~piigate.crypto.secret.Secret` (``***`` when shown).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import yaml

from piigate.crypto.secret import Secret
from piigate.errors import PolicyError
from piigate.policy.yamlnodes import NodeReader

__all__ = [
    "ALERT_KEYS",
    "FACILITIES",
    "AlertSettings",
    "AlertsConfigError",
    "JsonLinesSettings",
    "SyslogSettings",
    "WebhookSettings",
    "alerts_from_env",
    "alerts_from_yaml",
]

ALERT_KEYS: Final = frozenset({"webhook", "jsonl", "syslog"})
_WEBHOOK_KEYS: Final = frozenset(
    {"url", "secret_file", "secret", "timeout", "max_attempts", "queue"}
)
_SYSLOG_KEYS: Final = frozenset({"address", "facility"})
_MIN_SECRET = 16
_MAX_TIMEOUT = 60
# RFC 5424 §6.2.1's facility codes of the facilities an alert may go to.
FACILITIES: Final[Mapping[str, int]] = {
    "user": 1,
    "daemon": 3,
    "auth": 4,
    "authpriv": 10,
    **{f"local{n}": 16 + n for n in range(8)},
}
_SYSLOG_SCHEMES: Final = ("udp", "tcp")


class AlertsConfigError(PolicyError):
    """The alert sinks' settings cannot be used (one line each, never the secret)."""

    code = "config_invalid"
    title = "Invalid configuration"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    secret: Secret[str] | None = None
    timeout: float = 10.0
    max_attempts: int = 8
    queue: int = 1000


@dataclass(frozen=True, slots=True)
class JsonLinesSettings:
    path: str  # "-": standard output


@dataclass(frozen=True, slots=True)
class SyslogSettings:
    address: str  # udp://HOST:PORT, tcp://HOST:PORT, or the path of a local datagram socket
    facility: str = "auth"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    webhook: WebhookSettings | None = None
    jsonl: JsonLinesSettings | None = None
    syslog: SyslogSettings | None = None

    def problems(self) -> list[str]:
        """What keeps these settings from working (empty when they are complete)."""
        found: list[str] = []
        if self.webhook is not None:
            found.extend(_webhook_problems(self.webhook, need_secret=True))
        if self.syslog is not None:
            found.extend(_syslog_problems(self.syslog))
        if self.jsonl is not None and not self.jsonl.path.strip():
            found.append("alerts.jsonl: path must name a file or - (standard output)")
        return found


def alerts_from_yaml(read: NodeReader, node: yaml.Node, base: Path) -> AlertSettings | None:
    """The ``service.alerts`` mapping; errors go to ``read.errors`` with their line."""
    spec = read.mapping(node, "alerts", ALERT_KEYS)
    if spec is None:
        return None
    settings = AlertSettings()
    if "webhook" in spec:
        webhook = _yaml_webhook(read, spec["webhook"][1], base)
        settings = replace(settings, webhook=webhook)
        # The secret may still come from the environment: checked with it (alerts_from_env).
        for problem in _webhook_problems(webhook, need_secret=False) if webhook else ():
            read.errors.at(spec["webhook"][1], problem)
    if "jsonl" in spec:
        jsonl = read.mapping(spec["jsonl"][1], "alerts.jsonl", frozenset({"path"})) or {}
        path = read.string(jsonl["path"][1], "alerts.jsonl.path") if "path" in jsonl else None
        if "path" not in jsonl:
            read.errors.at(spec["jsonl"][1], "alerts.jsonl needs path (a file, or - for stdout)")
        elif path is not None:
            settings = replace(settings, jsonl=JsonLinesSettings(_path(path, base)))
    if "syslog" in spec:
        syslog = read.mapping(spec["syslog"][1], "alerts.syslog", _SYSLOG_KEYS)
        values = {k: read.string(v[1], f"alerts.syslog.{k}") for k, v in (syslog or {}).items()}
        if "address" not in values:
            read.errors.at(spec["syslog"][1], "alerts.syslog needs address")
        elif all(v is not None for v in values.values()):
            syslog_settings = SyslogSettings(**values)  # type: ignore[arg-type]
            settings = replace(settings, syslog=syslog_settings)
            for problem in _syslog_problems(syslog_settings):
                read.errors.at(spec["syslog"][1], problem)
    return settings


def _yaml_webhook(read: NodeReader, node: yaml.Node, base: Path) -> WebhookSettings | None:
    spec = read.mapping(node, "alerts.webhook", _WEBHOOK_KEYS)
    if spec is None:
        return None
    if "secret" in spec:
        read.errors.at(
            spec["secret"][0],
            "alerts.webhook: keep the secret out of this file: secret_file, or "
            "PIIGATE_ALERTS_WEBHOOK_SECRET",
        )
    if "url" not in spec:
        read.errors.at(node, "alerts.webhook needs url")
        return None
    url = read.string(spec["url"][1], "alerts.webhook.url")
    values: dict[str, object] = {}
    for key, low, high in (("max_attempts", 1, 100), ("queue", 1, 1_000_000)):
        if key in spec:
            values[key] = read.integer(spec[key][1], f"alerts.webhook.{key}", low=low, high=high)
    if "timeout" in spec:
        text = read.number(spec["timeout"][1], "alerts.webhook.timeout")
        values["timeout"] = None if text is None else float(text)
    if "secret_file" in spec:
        name = read.string(spec["secret_file"][1], "alerts.webhook.secret_file")
        if name is not None:
            try:
                values["secret"] = _read_secret(Path(_path(name, base)))
            except ValueError as exc:
                read.errors.at(spec["secret_file"][1], str(exc))
    if url is None or any(v is None for v in values.values()):
        return None
    return WebhookSettings(url=url, **values)  # type: ignore[arg-type]


def alerts_from_env(settings: AlertSettings, env: Mapping[str, str]) -> AlertSettings:
    """``settings`` with the environment on top, checked whole. Raises :class:`AlertsConfigError`.

    ``PIIGATE_ALERTS_WEBHOOK_URL``, ``PIIGATE_ALERTS_WEBHOOK_SECRET`` or
    ``PIIGATE_ALERTS_WEBHOOK_SECRET_FILE``, ``PIIGATE_ALERTS_JSONL`` (a path or ``-``),
    ``PIIGATE_ALERTS_SYSLOG`` (an address).
    """
    url = env.get("PIIGATE_ALERTS_WEBHOOK_URL", "").strip()
    secret, secret_file = (
        env.get("PIIGATE_ALERTS_WEBHOOK_SECRET"),
        env.get("PIIGATE_ALERTS_WEBHOOK_SECRET_FILE"),
    )
    if secret and secret_file:
        raise AlertsConfigError(
            ["set PIIGATE_ALERTS_WEBHOOK_SECRET or PIIGATE_ALERTS_WEBHOOK_SECRET_FILE, not both"]
        )
    webhook = settings.webhook
    if url:
        webhook = replace(webhook, url=url) if webhook else WebhookSettings(url=url)
    if (secret or secret_file) and webhook is None:
        raise AlertsConfigError(["PIIGATE_ALERTS_WEBHOOK_SECRET needs a webhook url too"])
    if webhook is not None and secret:
        webhook = replace(webhook, secret=Secret(secret.strip()))
    if webhook is not None and secret_file:
        try:
            webhook = replace(webhook, secret=_read_secret(Path(secret_file)))
        except ValueError as exc:
            raise AlertsConfigError([f"PIIGATE_ALERTS_WEBHOOK_SECRET_FILE: {exc}"]) from None
    values: dict[str, object] = {"webhook": webhook}
    if env.get("PIIGATE_ALERTS_JSONL", "").strip():
        values["jsonl"] = JsonLinesSettings(env["PIIGATE_ALERTS_JSONL"].strip())
    if env.get("PIIGATE_ALERTS_SYSLOG", "").strip():
        facility = settings.syslog.facility if settings.syslog else "auth"
        values["syslog"] = SyslogSettings(env["PIIGATE_ALERTS_SYSLOG"].strip(), facility)
    merged = replace(settings, **values)  # type: ignore[arg-type]
    problems = merged.problems()
    if problems:
        raise AlertsConfigError(problems)
    return merged


def _webhook_problems(webhook: WebhookSettings, *, need_secret: bool) -> list[str]:
    found = []
    parts = urlsplit(webhook.url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        found.append("alerts.webhook: url must be an http(s) URL")
    elif parts.scheme == "http" and not _loopback(parts.hostname):
        found.append("alerts.webhook: url must use https (plain http only on the loopback)")
    short = webhook.secret is not None and len(webhook.secret.reveal()) < _MIN_SECRET
    if short or (need_secret and webhook.secret is None):
        found.append(
            f"alerts.webhook: needs a secret of at least {_MIN_SECRET} characters "
            "(secret_file, PIIGATE_ALERTS_WEBHOOK_SECRET or PIIGATE_ALERTS_WEBHOOK_SECRET_FILE)"
        )
    if not 0 < webhook.timeout <= _MAX_TIMEOUT:
        found.append(f"alerts.webhook: timeout must be between 0 and {_MAX_TIMEOUT} seconds")
    return found


def _syslog_problems(syslog: SyslogSettings) -> list[str]:
    found = []
    if syslog.facility not in FACILITIES:
        found.append(f"alerts.syslog: facility must be one of: {', '.join(FACILITIES)}")
    address = syslog.address
    if not address.startswith("/"):
        parts = urlsplit(address)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in _SYSLOG_SCHEMES or not parts.hostname or port is None:
            found.append(
                "alerts.syslog: address must be udp://HOST:PORT, tcp://HOST:PORT or a socket path"
            )
    return found


def _read_secret(path: Path) -> Secret[str]:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path} ({type(exc).__name__})") from None
    return Secret(text)


def _path(text: str, base: Path) -> str:
    if text == "-" or Path(text).is_absolute():
        return text
    return str(base / text)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
