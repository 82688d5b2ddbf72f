"""Choosing the SMS adapter from the settings (``SmsSettings``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.factors.sms.outbox import OutboxSender
from piigate.factors.sms.port import SmsSender
from piigate.factors.sms.settings import SmsConfigError, SmsProvider, SmsSettings
from piigate.factors.sms.twilio import TwilioSender
from piigate.factors.sms.webhook import WebhookSender
from piigate.store.db import Database

__all__ = ["open_sender"]


def _outbox(settings: SmsSettings, db: Database, keyring: Keyring, clock: Clock) -> SmsSender:
    return OutboxSender(db, keyring, clock)


def _webhook(settings: SmsSettings, db: Database, keyring: Keyring, clock: Clock) -> SmsSender:
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    return WebhookSender(settings.webhook_url, settings.webhook_secret, timeout=settings.timeout)


def _twilio(settings: SmsSettings, db: Database, keyring: Keyring, clock: Clock) -> SmsSender:
    assert settings.twilio_account_sid is not None and settings.twilio_auth_token is not None
    return TwilioSender(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        from_number=settings.twilio_from,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        base_url=settings.twilio_base_url,
        timeout=settings.timeout,
    )


_ADAPTERS: Mapping[SmsProvider, Callable[[SmsSettings, Database, Keyring, Clock], SmsSender]] = {
    SmsProvider.OUTBOX: _outbox,
    SmsProvider.WEBHOOK: _webhook,
    SmsProvider.TWILIO: _twilio,
}


def open_sender(
    settings: SmsSettings, *, db: Database, keyring: Keyring, clock: Clock
) -> SmsSender:
    """The configured adapter. Raises :class:`SmsConfigError` when the settings are incomplete
    (they are checked when loaded too; this also covers settings built in code)."""
    problems = settings.problems()
    if problems:
        raise SmsConfigError(problems)
    return _ADAPTERS[settings.provider](settings, db, keyring, clock)
