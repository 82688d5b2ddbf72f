"""``service.alerts`` in the configuration file and ``PIIGATE_ALERTS_*``: the sinks, their
errors at FILE:LINE:COL, and the webhook's secret kept out of the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from piigate.config import ConfigError, load_settings
from piigate.errors import PolicyError

SECRET = "s3cret-s3cret-s3cret"


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_every_sink_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "hook.key").write_text(SECRET + "\n")
    path = write(
        tmp_path / "piigate.yaml",
        """\
        policy: p.yaml
        service:
          alerts:
            webhook: {url: "https://hooks.example/piigate", secret_file: hook.key,
                      timeout: 2.5, max_attempts: 4, queue: 50}
            jsonl: {path: logs/alerts.jsonl}
            syslog: {address: "udp://127.0.0.1:514", facility: local3}
        """,
    )
    alerts = load_settings(path, environ={}).alerts
    assert alerts.webhook is not None and alerts.webhook.url == "https://hooks.example/piigate"
    assert alerts.webhook.secret is not None and alerts.webhook.secret.reveal() == SECRET
    assert (alerts.webhook.timeout, alerts.webhook.max_attempts, alerts.webhook.queue) == (
        2.5,
        4,
        50,
    )
    assert SECRET not in repr(alerts)
    assert alerts.jsonl is not None and alerts.jsonl.path == str(tmp_path / "logs/alerts.jsonl")
    assert alerts.syslog is not None
    assert (alerts.syslog.address, alerts.syslog.facility) == ("udp://127.0.0.1:514", "local3")


def test_no_alerts_section_means_no_sinks(tmp_path: Path) -> None:
    alerts = load_settings(write(tmp_path / "c.yaml", "policy: p.yaml\n"), environ={}).alerts
    assert (alerts.webhook, alerts.jsonl, alerts.syslog) == (None, None, None)


def test_mistakes_are_reported_at_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        """\
        policy: p.yaml
        service:
          alerts:
            webhook:
              url: "http://hooks.example/x"
              secret: "written in the file"
              max_attempts: 0
            syslog: {address: "ftp://x", facility: kernel}
            email: {to: x}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    errors = "\n".join(caught.value.errors)
    assert f"{path}:6:7: alerts.webhook: keep the secret out of this file" in errors
    assert f"{path}:7:21: alerts.webhook.max_attempts must be" in errors
    assert f"{path}:8:13: alerts.syslog: facility must be one of" in errors
    assert f"{path}:8:13: alerts.syslog: address must be udp://HOST:PORT" in errors
    assert f"{path}:9:5: unknown key 'email'" in errors
    assert "written in the file" not in errors


def test_plain_http_only_on_the_loopback(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        'policy: p.yaml\nservice:\n  alerts:\n    webhook: {url: "http://hooks.example/x"}\n',
    )
    with pytest.raises(PolicyError) as caught:
        load_settings(path, environ={"PIIGATE_ALERTS_WEBHOOK_SECRET": SECRET})
    assert caught.value.errors == [
        f"{path}:4:14: alerts.webhook: url must use https (plain http only on the loopback)"
    ]
    loopback = path.replace(".yaml", "-2.yaml")
    write(Path(loopback), Path(path).read_text().replace("hooks.example", "127.0.0.1:9"))
    alerts = load_settings(loopback, environ={"PIIGATE_ALERTS_WEBHOOK_SECRET": SECRET}).alerts
    assert alerts.webhook is not None and alerts.webhook.secret is not None


def test_a_webhook_needs_its_secret_from_the_environment_or_a_file(tmp_path: Path) -> None:
    env = {"PIIGATE_ALERTS_WEBHOOK_URL": "https://hooks.example/x"}
    with pytest.raises(PolicyError, match="needs a secret of at least 16 characters"):
        load_settings(None, environ=env)
    with pytest.raises(PolicyError, match="needs a secret of at least 16 characters"):
        load_settings(None, environ={**env, "PIIGATE_ALERTS_WEBHOOK_SECRET": "short"})
    (tmp_path / "key").write_text(SECRET)
    from_file = load_settings(
        None, environ={**env, "PIIGATE_ALERTS_WEBHOOK_SECRET_FILE": str(tmp_path / "key")}
    )
    assert from_file.alerts.webhook is not None
    assert from_file.alerts.webhook.secret is not None
    assert from_file.alerts.webhook.secret.reveal() == SECRET
    with pytest.raises(PolicyError, match="cannot read"):
        load_settings(
            None, environ={**env, "PIIGATE_ALERTS_WEBHOOK_SECRET_FILE": str(tmp_path / "none")}
        )


def test_the_environment_adds_and_overrides_sinks(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        """\
        policy: p.yaml
        service:
          alerts:
            syslog: {address: "udp://127.0.0.1:514", facility: local1}
        """,
    )
    env = {
        "PIIGATE_ALERTS_JSONL": "-",
        "PIIGATE_ALERTS_SYSLOG": "tcp://127.0.0.1:601",
        "PIIGATE_ALERTS_WEBHOOK_URL": "https://hooks.example/y",
        "PIIGATE_ALERTS_WEBHOOK_SECRET": SECRET,
    }
    alerts = load_settings(path, environ=env).alerts
    assert alerts.jsonl is not None and alerts.jsonl.path == "-"
    assert alerts.syslog is not None
    assert (alerts.syslog.address, alerts.syslog.facility) == ("tcp://127.0.0.1:601", "local1")
    assert alerts.webhook is not None and alerts.webhook.url == "https://hooks.example/y"
    with pytest.raises(PolicyError, match="address must be"):
        load_settings(path, environ={"PIIGATE_ALERTS_SYSLOG": "localhost"})
