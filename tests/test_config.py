"""Configuration: a policy file with a service section, a config file naming the policy, env."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from piigate.config import ConfigError, load_settings


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_a_policy_file_with_a_service_section(tmp_path: Path) -> None:
    path = write(
        tmp_path / "policy.yaml",
        """\
        version: 1
        service:
          listen: 0.0.0.0:9000
          data_dir: state
          identity: {issuer: https://idp, audience: api, jwks_url: https://idp/jwks}
        """,
    )
    settings = load_settings(path, environ={})
    assert settings.policy_path == path
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.data_dir == tmp_path / "state"
    assert settings.identity is not None and settings.identity.audience == "api"
    assert settings.store_url == f"sqlite:///{(tmp_path / 'state' / 'piigate.db').resolve()}"


def test_a_config_file_names_the_policy_relative_to_itself(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml", "policy: rules/p.yaml\nservice: {public_url: https://x}\n"
    )
    settings = load_settings(path, environ={})
    assert settings.policy_path == str(tmp_path / "rules" / "p.yaml")
    assert settings.issuer == "https://x"


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml", "policy: p.yaml\nservice: {database_url: sqlite:///a}\n"
    )
    env = {
        "PIIGATE_DATABASE_URL": "postgresql://db/x",
        "PIIGATE_POLICY": "/etc/p.yaml",
        "PIIGATE_DATA_DIR": "/var/lib/piigate",
    }
    settings = load_settings(path, environ=env)
    assert settings.store_url == "postgresql://db/x"
    assert settings.policy_path == "/etc/p.yaml"
    assert settings.data_dir == Path("/var/lib/piigate")


def test_errors_name_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        """\
        policy: p.yaml
        service:
          listen: nowhere
          colour: blue
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    errors = caught.value.errors
    assert any(e.startswith(f"{path}:3:11: listen must be HOST:PORT") for e in errors), errors
    assert any(e.startswith(f"{path}:4:3: unknown key 'colour'") for e in errors), errors


def test_oidc_env_needs_all_three(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(None, environ={"PIIGATE_OIDC_ISSUER": "https://idp"})


def test_the_audit_writer_is_a_process_unless_configured(tmp_path: Path) -> None:
    assert load_settings(None, environ={}).audit_writer == "process"
    path = write(
        tmp_path / "policy.yaml",
        """\
        version: 1
        service:
          audit_writer: thread
        """,
    )
    assert load_settings(path, environ={}).audit_writer == "thread"
    env = {"PIIGATE_AUDIT_WRITER": "process"}
    assert load_settings(path, environ=env).audit_writer == "process"


def test_a_bad_audit_writer_is_refused_where_it_is_written(tmp_path: Path) -> None:
    path = write(
        tmp_path / "policy.yaml",
        """\
        version: 1
        service:
          audit_writer: fork
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.errors == [f"{path}:3:17: audit_writer must be process or thread"]
    with pytest.raises(ConfigError, match="PIIGATE_AUDIT_WRITER must be process or thread"):
        load_settings(None, environ={"PIIGATE_AUDIT_WRITER": "fork"})


def test_the_public_url_is_the_address_served_unless_configured(tmp_path: Path) -> None:
    assert load_settings(None, environ={}).public_url == "http://127.0.0.1:8080"
    listening = write(tmp_path / "a.yaml", "policy: p.yaml\nservice: {listen: '[::1]:9000'}\n")
    settings = load_settings(listening, environ={})
    assert (settings.public_url, settings.issuer) == ("http://[::1]:9000", "http://[::1]:9000")
    assert not settings.public_url_guessed  # loopback: the derived URL is the one to use
    # serve --host/--port: the URL follows
    moved = settings.serving_on(port=18080)
    assert (moved.port, moved.public_url) == (18080, "http://[::1]:18080")
    assert settings.serving_on(host="0.0.0.0").public_url_guessed

    env = {"PIIGATE_PUBLIC_URL": "https://piigate.example"}
    configured = load_settings(listening, environ=env).serving_on("0.0.0.0", 18080)
    assert configured.public_url == "https://piigate.example"
    assert not configured.public_url_guessed
    both = write(
        tmp_path / "b.yaml",
        "policy: p.yaml\nservice: {public_url: 'https://x', listen: '0.0.0.0:9000'}\n",
    )
    from_file = load_settings(both, environ={}).serving_on(port=1)
    assert (from_file.public_url, from_file.public_url_guessed) == ("https://x", False)


def test_where_the_master_key_comes_from(tmp_path: Path) -> None:
    path = write(tmp_path / "piigate.yaml", "service: {data_dir: d, master_key_file: keys/mk}\n")
    from_file = load_settings(path, environ={}).master_key_spec()
    assert (from_file.file, from_file.value) == (tmp_path / "keys" / "mk", None)
    assert from_file.default_file == tmp_path / "d" / "master.key"

    env = {"PIIGATE_MASTER_KEY": "c2VjcmV0IG1hc3RlciBrZXkgb2YgdGhpcyB0ZXN0ISE="}
    settings = load_settings(path, environ=env)
    spec = settings.master_key_spec()
    assert spec.value is not None and spec.value.reveal() == env["PIIGATE_MASTER_KEY"]
    assert env["PIIGATE_MASTER_KEY"] not in repr(settings)  # the value is a Secret
    plain = load_settings(environ={"PIIGATE_MASTER_KEY_FILE": "/run/mk"}).master_key_spec()
    assert plain.file == Path("/run/mk") and plain.default_file == Path(".piigate/master.key")


def test_the_master_key_and_its_file_are_not_both_given() -> None:
    env = {"PIIGATE_MASTER_KEY": "x", "PIIGATE_MASTER_KEY_FILE": "/run/mk"}
    with pytest.raises(ConfigError, match="PIIGATE_MASTER_KEY or PIIGATE_MASTER_KEY_FILE"):
        load_settings(environ=env)


def test_allowed_origins_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        """\
        policy: p.yaml
        service:
          allowed_origins: [https://Console.Example, "http://localhost:3000/", https://a.example:443]
        """,
    )
    settings = load_settings(path, environ={})
    assert settings.allowed_origins == (
        "https://console.example",
        "http://localhost:3000",
        "https://a.example",
    )
    env = {"PIIGATE_ALLOWED_ORIGINS": "https://b.example, http://[::1]:8081"}
    assert load_settings(path, environ=env).allowed_origins == (
        "https://b.example",
        "http://[::1]:8081",
    )
    assert load_settings(None, environ={}).allowed_origins == ()


def test_an_allowed_origin_must_be_an_origin(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        "policy: p.yaml\nservice:\n  allowed_origins: [https://ok.example, https://x.example/app]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.errors == [
        f"{path}:3:41: allowed_origins: 'https://x.example/app' must be scheme://host[:port] only"
    ]
    for bad in ("ftp://x.example", "x.example", "https://"):
        with pytest.raises(ConfigError, match="PIIGATE_ALLOWED_ORIGINS"):
            load_settings(None, environ={"PIIGATE_ALLOWED_ORIGINS": bad})


def console_config(tmp_path: Path, console: str, issuer: str = "https://idp.example") -> str:
    """A configuration file whose ``identity.console`` is ``console`` (its lines from 10 on)."""
    head = (
        "policy: p.yaml\n"
        "service:\n"
        "  identity:\n"
        f"    issuer: {issuer}\n"
        "    audience: api\n"
        "    jwks_url: https://idp.example/jwks\n"
        "    roles_claim: groups\n"
        "    console:\n"
        "      # the client\n"
    )
    body = textwrap.indent(textwrap.dedent(console), " " * 6)
    path = tmp_path / "piigate.yaml"
    path.write_text(head + body)
    return str(path)


def test_the_consoles_client_at_the_identity_provider(tmp_path: Path) -> None:
    (tmp_path / "oidc-secret").write_text("s3cret-value\n")
    path = console_config(
        tmp_path,
        """\
        client_id: piigate-console
        client_secret_file: oidc-secret
        scopes: [profile, email, openid]
        redirect_path: /auth/callback
        subject_claim: preferred_username
        """,
    )
    identity = load_settings(path, environ={}).identity
    assert identity is not None and identity.console is not None
    console = identity.console
    assert console.client_id == "piigate-console"
    assert console.client_secret is not None and console.client_secret.reveal() == "s3cret-value"
    assert "s3cret" not in repr(console)
    assert console.scopes == ("openid", "profile", "email")
    assert console.redirect_path == "/auth/callback"
    assert console.subject_claim == "preferred_username" and console.roles_claim is None
    plain = load_settings(
        console_config(tmp_path, "client_id: piigate-console\n"), environ={}
    ).identity
    assert plain is not None and plain.console is not None
    assert plain.console.client_secret is None and plain.console.scopes == ("openid",)
    assert plain.console.redirect_path == "/login/oidc/callback"


def test_the_consoles_client_errors_name_the_line(tmp_path: Path) -> None:
    path = console_config(
        tmp_path,
        """\
        client_id: piigate-console
        client_secret: hunter2
        client_secret_file: missing-file
        scopes: [openid, "bad scope"]
        redirect_path: "//evil.example/cb"
        colour: blue
        """,
        issuer="http://idp.example",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    errors = caught.value.errors
    expected = [
        f"{path}:4:13: identity.issuer must be an https:// URL",
        f"{path}:11:7: identity.console: a client secret is never written",
        f"{path}:12:27: identity.console.client_secret_file: cannot read",
        f"{path}:13:24: identity.console.scopes: 'bad scope' is not a scope name",
        f"{path}:14:22: identity.console.redirect_path must be a path",
        f"{path}:15:7: unknown key 'colour' in identity.console",
    ]
    for start in expected:
        assert any(e.startswith(start) for e in errors), (start, errors)
    assert not any("hunter2" in e for e in errors)
    missing = console_config(tmp_path, "scopes: [openid]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(missing, environ={})
    assert any(
        e.startswith(f"{missing}:10:7: identity.console needs client_id")
        for e in caught.value.errors
    )


def test_the_consoles_client_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    env = {
        "PIIGATE_OIDC_ISSUER": "https://idp.example",
        "PIIGATE_OIDC_AUDIENCE": "api",
        "PIIGATE_OIDC_JWKS_URL": "https://idp.example/jwks",
        "PIIGATE_OIDC_CLIENT_ID": "piigate-console",
        "PIIGATE_OIDC_CLIENT_SECRET_FILE": str(secret),
    }
    identity = load_settings(None, environ=env).identity
    assert identity is not None and identity.console is not None
    assert identity.console.client_id == "piigate-console"
    assert identity.console.client_secret is not None
    assert identity.console.client_secret.reveal() == "from-a-file"
    # The file's console stays when the environment names the issuer; the secret comes in.
    path = console_config(tmp_path, "client_id: from-the-file\n")
    env = {**env, "PIIGATE_OIDC_CLIENT_SECRET": "from-env"}
    del env["PIIGATE_OIDC_CLIENT_ID"], env["PIIGATE_OIDC_CLIENT_SECRET_FILE"]
    identity = load_settings(path, environ=env).identity
    assert identity is not None and identity.console is not None
    assert identity.console.client_id == "from-the-file" and identity.roles_claim == "groups"
    assert identity.console.client_secret is not None
    assert identity.console.client_secret.reveal() == "from-env"
    for wrong in (
        {"PIIGATE_OIDC_CLIENT_ID": "c"},  # no identity provider
        {**env, "PIIGATE_OIDC_CLIENT_SECRET_FILE": str(secret)},  # both
        {**env, "PIIGATE_OIDC_ISSUER": "http://idp.example"},
    ):
        with pytest.raises(ConfigError):
            load_settings(path if "PIIGATE_OIDC_ISSUER" in wrong else None, environ=wrong)
