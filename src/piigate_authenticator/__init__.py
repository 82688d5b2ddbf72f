"""The reference push authenticator (the "trusted app", CONTRACT §1).

It does what a phone app does: enrol with the ``piigate-push://enroll?...`` link (a new device
key pair completes the enrollment the link was made for), list the pushes waiting, approve one
with the number the step-up page shows, or deny it ("this wasn't me"). Every request is signed
with the device key (:mod:`piigate.factors.push.protocol`, the only part of ``piigate`` it
uses: it is a device, not the server).

- :mod:`.keyfile`: the devices' private keys, in one JSON file only its owner can read;
- :mod:`.client`: the signed HTTP client of the server's device API;
- :mod:`.device`: the commands (enrol, pending, answer) and what a push shows.

``piigate authenticator ...`` (:mod:`piigate.cli.authenticator`) runs them from a terminal.
"""

from __future__ import annotations

from piigate_authenticator.client import MAX_WAIT, DeviceApi
from piigate_authenticator.device import Authenticator, describe_push, is_push_id
from piigate_authenticator.errors import AuthenticatorError
from piigate_authenticator.keyfile import DEFAULT_FILE, FILE_ENV, DeviceEntry, KeyFile

__all__ = [
    "DEFAULT_FILE",
    "FILE_ENV",
    "MAX_WAIT",
    "Authenticator",
    "AuthenticatorError",
    "DeviceApi",
    "DeviceEntry",
    "KeyFile",
    "describe_push",
    "is_push_id",
]
