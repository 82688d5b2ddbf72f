"""The Twilio adapter: one call to the Programmable Messaging REST API.

``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with form fields ``To``,
``Body`` and either ``From`` (a Twilio number) or ``MessagingServiceSid``, authenticated with
HTTP Basic ``AccountSid:AuthToken``; Twilio answers 201 with the message resource. The base URL
is configurable, for Twilio's regional edges and for API-compatible providers.

Twilio's error bodies can quote the destination number, so only the HTTP status and Twilio's
numeric error code leave this module.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from piigate.crypto.secret import Secret
from piigate.factors.sms.port import SmsDeliveryError, SmsMessage

__all__ = ["TwilioSender"]

API_VERSION = "2010-04-01"


class TwilioSender:
    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: Secret[str],
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
    ) -> None:
        if not from_number and not messaging_service_sid:
            raise ValueError("twilio needs a From number or a MessagingServiceSid")
        self._url = (
            f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        self._sender = (
            {"MessagingServiceSid": messaging_service_sid}
            if messaging_service_sid
            else {"From": str(from_number)}
        )
        self._client = httpx.AsyncClient(
            auth=httpx.BasicAuth(account_sid, auth_token.reveal()),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
        )

    async def send(self, message: SmsMessage) -> None:
        form = {"To": message.to.e164, **self._sender, "Body": message.text.reveal()}
        try:
            response = await self._client.post(
                self._url, data=form, headers={"Accept": "application/json"}
            )
        except httpx.TimeoutException:
            raise SmsDeliveryError(self.name, "timeout") from None
        except httpx.HTTPError:
            raise SmsDeliveryError(self.name, "network") from None
        if not response.is_success:
            raise SmsDeliveryError(self.name, _reason(response))

    async def aclose(self) -> None:
        await self._client.aclose()


def _reason(response: httpx.Response) -> str:
    """``http_400`` plus Twilio's numeric error code (21211: invalid To...), nothing else."""
    reason = f"http_{response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return reason
    code = body.get("code") if isinstance(body, dict) else None
    return f"{reason}_twilio_{code}" if isinstance(code, int) else reason
