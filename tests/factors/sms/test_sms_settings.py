"""SMS provider settings: the service.sms section and the PIIGATE_SMS_* / PIIGATE_TWILIO_*
variables, checked whole, secrets never shown."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from piigate.config import ConfigError, Settings, load_settings
from piigate.crypto.secret import Secret
from piigate.errors import PolicyError
from piigate.factors.sms.settings import SmsConfigError, SmsProvider, SmsSettings

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "examples" / "policy.yaml"
TOKEN = "twilio-auth-token-value-1234"
HOOK_SECRET = "webhook-secret-0123456789abcdef"


def write_config(tmp_path: Path, sms: str) -> str:
    path = tmp_path / "piigate.yaml"
    path.write_text(f"policy: {POLICY}\nservice:\n  sms:\n" + textwrap.indent(sms, "    "))
    return str(path)


def test_the_default_is_the_outbox() -> None:
    settings = load_settings(environ={})
    assert settings.sms == SmsSettings()
    assert settings.sms.provider is SmsProvider.OUTBOX and settings.sms.problems() == []


def test_twilio_from_the_file(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"provider: twilio\ntwilio_account_sid: AC123\ntwilio_auth_token: {TOKEN}\n"
        "twilio_from: '+15005550006'\ntwilio_base_url: https://api.twilio.example\ntimeout: 4\n",
    )
    sms = load_settings(config, environ={}).sms
    assert sms.provider is SmsProvider.TWILIO
    assert sms.twilio_account_sid == "AC123" and sms.twilio_from == "+15005550006"
    assert sms.twilio_auth_token == Secret(TOKEN)
    assert sms.twilio_base_url == "https://api.twilio.example" and sms.timeout == 4.0
    # A logged Settings shows no secret.
    assert TOKEN not in repr(load_settings(config, environ={}))


def test_the_environment_completes_and_overrides_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "provider: webhook\nwebhook_url: https://sms.example/send\n")
    with pytest.raises(SmsConfigError) as caught:
        load_settings(config, environ={})
    assert caught.value.errors == [
        "sms: the webhook provider needs webhook_secret of at least 16 characters "
        "(PIIGATE_SMS_WEBHOOK_SECRET)"
    ]
    sms = load_settings(config, environ={"PIIGATE_SMS_WEBHOOK_SECRET": HOOK_SECRET}).sms
    assert sms.provider is SmsProvider.WEBHOOK and sms.webhook_secret == Secret(HOOK_SECRET)
    env = {"PIIGATE_SMS_PROVIDER": "OUTBOX"}
    assert load_settings(config, environ=env).sms.provider is SmsProvider.OUTBOX


def test_twilio_from_the_environment() -> None:
    env = {
        "PIIGATE_SMS_PROVIDER": "twilio",
        "PIIGATE_TWILIO_ACCOUNT_SID": "AC9",
        "PIIGATE_TWILIO_AUTH_TOKEN": TOKEN,
        "PIIGATE_TWILIO_MESSAGING_SERVICE_SID": "MG1",
    }
    sms = load_settings(environ=env).sms
    assert sms.twilio_messaging_service_sid == "MG1" and sms.twilio_from is None
    assert sms.twilio_base_url == "https://api.twilio.com"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIIGATE_SMS_PROVIDER": "carrier-pigeon"}, "sms.provider must be one of"),
        ({"PIIGATE_SMS_PROVIDER": "twilio"}, "twilio needs twilio_account_sid"),
        ({"PIIGATE_SMS_PROVIDER": "webhook"}, "needs webhook_url"),
        ({"PIIGATE_SMS_TIMEOUT": "soon"}, "sms.timeout must be a number"),
        ({"PIIGATE_SMS_TIMEOUT": "0"}, "timeout must be between"),
        (
            {
                "PIIGATE_SMS_PROVIDER": "webhook",
                "PIIGATE_SMS_WEBHOOK_URL": "http://sms.example/send?token=abc",
                "PIIGATE_SMS_WEBHOOK_SECRET": HOOK_SECRET,
            },
            "webhook_url must use https",
        ),
        (
            {
                "PIIGATE_SMS_PROVIDER": "webhook",
                "PIIGATE_SMS_WEBHOOK_URL": "ftp://sms.example",
                "PIIGATE_SMS_WEBHOOK_SECRET": HOOK_SECRET,
            },
            "webhook_url must be an http(s) URL",
        ),
    ],
)
def test_incomplete_or_wrong_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_settings(environ=env)
    text = "\n".join(caught.value.errors)
    assert message in text
    assert "token=abc" not in text  # URLs may carry credentials: never echoed


def test_plain_http_is_allowed_on_loopback_only() -> None:
    local = SmsSettings(
        provider=SmsProvider.WEBHOOK,
        webhook_url="http://127.0.0.1:9000/sms",
        webhook_secret=Secret(HOOK_SECRET),
    )
    assert local.problems() == []
    assert (
        SmsSettings(
            provider=SmsProvider.TWILIO,
            twilio_account_sid="AC1",
            twilio_auth_token=Secret(TOKEN),
            twilio_from="+15005550006",
            twilio_base_url="http://[::1]:8000",
        ).problems()
        == []
    )


def test_a_bad_sms_section_names_its_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, "provider: twilio\nsender: me\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert any(":5:" in line and "unknown key 'sender'" in line for line in caught.value.errors)


def test_settings_built_in_code_default_to_the_outbox() -> None:
    assert Settings().sms.provider is SmsProvider.OUTBOX
