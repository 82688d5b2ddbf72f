"""SMS one-time codes: phone numbers, the provider port, and what the messages say.

The adapters live in their own modules (:mod:`~piigate.sms.outbox`, :mod:`~piigate.sms.webhook`,
:mod:`~piigate.sms.twilio`, chosen by :func:`piigate.sms.providers.open_sender`); the ceremony
that sends and checks codes is :mod:`piigate.stepup.sms`.
"""

from __future__ import annotations

from piigate.sms.phone import InvalidPhoneNumber, PhoneNumber, parse_phone
from piigate.sms.port import MemorySender, SmsDeliveryError, SmsMessage, SmsSender
from piigate.sms.text import approval_text, enrollment_text

__all__ = [
    "InvalidPhoneNumber",
    "MemorySender",
    "PhoneNumber",
    "SmsDeliveryError",
    "SmsMessage",
    "SmsSender",
    "approval_text",
    "enrollment_text",
    "parse_phone",
]
