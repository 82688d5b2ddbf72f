"""SMS provider settings: the ``service.sms`` section of the configuration file and the
``PIIGATE_SMS_*`` / ``PIIGATE_TWILIO_*`` environment variables (read by ``piigate.config``).

```yaml
service:
  sms:
    provider: twilio                  # outbox (default) | webhook | twilio
    webhook_url: https://sms.internal.example/send
    webhook_secret: "..."             # HMAC-SHA256 key of the PIIGate-Signature header
    twilio_account_sid: AC...
    twilio_auth_token: "..."
    twilio_from: "+15005550006"       # or twilio_messaging_service_sid: MG...
    twilio_base_url: https://api.twilio.com
    timeout: 10                       # seconds, per request to the provider
```

Secrets (the webhook key, the Twilio auth token) are held as :class:`~piigate.crypto.secret.Secret`,
so a logged or printed ``Settings`` shows ``***``. Provider URLs must be ``https``, except on
the loopback interface (a local relay, tests): the message carries the code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

import yaml

from piigate.crypto.secret import Secret
from piigate.errors import PolicyError
from piigate.policy.yamlnodes import NodeReader

__all__ = [
    "ENV_VARS",
    "SMS_KEYS",
    "SmsConfigError",
    "SmsProvider",
    "SmsSettings",
    "sms_from_env",
    "sms_from_yaml",
]

TWILIO_BASE_URL: Final = "https://api.twilio.com"
DEFAULT_TIMEOUT: Final = 10.0
_MAX_TIMEOUT = 60


class SmsProvider(StrEnum):
    OUTBOX = "outbox"
    WEBHOOK = "webhook"
    TWILIO = "twilio"


class SmsConfigError(PolicyError):
    """The SMS settings are incomplete or invalid; ``errors`` name the keys, never the values."""

    code = "config_invalid"
    title = "Invalid configuration"


@dataclass(frozen=True, slots=True)
class SmsSettings:
    provider: SmsProvider = SmsProvider.OUTBOX
    webhook_url: str | None = None
    webhook_secret: Secret[str] | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: Secret[str] | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str = TWILIO_BASE_URL
    timeout: float = DEFAULT_TIMEOUT

    def problems(self) -> list[str]:
        """What keeps these settings from working (empty when they are complete)."""
        found: list[str] = []
        if self.provider is SmsProvider.WEBHOOK:
            if not self.webhook_url:
                found.append(
                    "sms: the webhook provider needs webhook_url (PIIGATE_SMS_WEBHOOK_URL)"
                )
            else:
                found.extend(_url_problems("webhook_url", self.webhook_url))
            if self.webhook_secret is None or len(self.webhook_secret.reveal()) < 16:
                found.append(
                    "sms: the webhook provider needs webhook_secret of at least 16 characters "
                    "(PIIGATE_SMS_WEBHOOK_SECRET)"
                )
        if self.provider is SmsProvider.TWILIO:
            if not self.twilio_account_sid:
                found.append("sms: twilio needs twilio_account_sid (PIIGATE_TWILIO_ACCOUNT_SID)")
            if self.twilio_auth_token is None or not self.twilio_auth_token.reveal():
                found.append("sms: twilio needs twilio_auth_token (PIIGATE_TWILIO_AUTH_TOKEN)")
            if not self.twilio_from and not self.twilio_messaging_service_sid:
                found.append(
                    "sms: twilio needs twilio_from or twilio_messaging_service_sid "
                    "(PIIGATE_TWILIO_FROM / PIIGATE_TWILIO_MESSAGING_SERVICE_SID)"
                )
            found.extend(_url_problems("twilio_base_url", self.twilio_base_url))
        if not 0 < self.timeout <= _MAX_TIMEOUT:
            found.append(f"sms: timeout must be between 0 and {_MAX_TIMEOUT} seconds")
        return found


# YAML key → (environment variable, is it a secret).
_FIELDS: Final[Mapping[str, tuple[str, bool]]] = {
    "provider": ("PIIGATE_SMS_PROVIDER", False),
    "webhook_url": ("PIIGATE_SMS_WEBHOOK_URL", False),
    "webhook_secret": ("PIIGATE_SMS_WEBHOOK_SECRET", True),
    "twilio_account_sid": ("PIIGATE_TWILIO_ACCOUNT_SID", False),
    "twilio_auth_token": ("PIIGATE_TWILIO_AUTH_TOKEN", True),
    "twilio_from": ("PIIGATE_TWILIO_FROM", False),
    "twilio_messaging_service_sid": ("PIIGATE_TWILIO_MESSAGING_SERVICE_SID", False),
    "twilio_base_url": ("PIIGATE_TWILIO_BASE_URL", False),
    "timeout": ("PIIGATE_SMS_TIMEOUT", False),
}
SMS_KEYS: Final = frozenset(_FIELDS)
ENV_VARS: Final = tuple(env for env, _ in _FIELDS.values())


def sms_from_yaml(read: NodeReader, node: yaml.Node) -> SmsSettings | None:
    """The ``service.sms`` mapping; errors go to ``read.errors`` with their line."""
    spec = read.mapping(node, "sms", SMS_KEYS)
    if spec is None:
        return None
    raw: dict[str, str] = {}
    for key, (_, value_node) in spec.items():
        text = read.string(value_node, f"sms.{key}")
        if text is not None:
            raw[key] = text
    try:
        settings = _apply(SmsSettings(), raw)
    except ValueError as exc:
        read.errors.at(node, str(exc))
        return None
    return settings


def sms_from_env(settings: SmsSettings, env: Mapping[str, str]) -> SmsSettings:
    """``settings`` with the environment's values on top, checked whole (the last step of
    loading, so a file and the environment may each give half). Raises :class:`SmsConfigError`."""
    raw = {key: env[name] for key, (name, _) in _FIELDS.items() if env.get(name)}
    try:
        merged = _apply(settings, raw)
    except ValueError as exc:
        raise SmsConfigError([str(exc)]) from None
    problems = merged.problems()
    if problems:
        raise SmsConfigError(problems)
    return merged


def _apply(settings: SmsSettings, raw: Mapping[str, str]) -> SmsSettings:
    values: dict[str, object] = {}
    for key, text in raw.items():
        if key == "provider":
            try:
                values[key] = SmsProvider(text.strip().lower())
            except ValueError:
                choices = ", ".join(p.value for p in SmsProvider)
                raise ValueError(f"sms.provider must be one of: {choices}") from None
        elif key == "timeout":
            try:
                values[key] = float(text)
            except ValueError:
                raise ValueError("sms.timeout must be a number of seconds") from None
        elif _FIELDS[key][1]:
            values[key] = Secret(text)
        else:
            values[key] = text.strip()
    return replace(settings, **values)  # type: ignore[arg-type]


def _url_problems(key: str, url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [f"sms: {key} must be an http(s) URL"]
    if parts.scheme == "http" and not _loopback(parts.hostname):
        return [f"sms: {key} must use https (plain http only on the loopback interface)"]
    return []


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
