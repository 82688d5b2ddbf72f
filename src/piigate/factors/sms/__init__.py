"""SMS one-time codes: phone numbers, the provider port, and what the messages say.

The adapters live in their own modules (``outbox``, ``webhook``, ``twilio``, chosen by
``providers.open_sender``); the ceremony that sends codes and enrols phones is ``ceremony``, the
check of a code at a challenge ``codes``.
"""

from __future__ import annotations

from piigate.factors.sms.phone import InvalidPhoneNumber, PhoneNumber, parse_phone
from piigate.factors.sms.port import MemorySender, SmsDeliveryError, SmsMessage, SmsSender
from piigate.factors.sms.text import approval_text, enrollment_text

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
