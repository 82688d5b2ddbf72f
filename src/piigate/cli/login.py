"""``piigate login``: a password for the PostgreSQL gateway, for a local user.

It logs in at the piigate service (``POST /v1/login``, the user's password read from the
terminal without echo, or from stdin when it is not a terminal) and asks for a database
credential (``POST /v1/db-credentials``): a session of its own, which it prints alone on stdout,
so that ``PGPASSWORD=$(piigate login --user alice) psql -h gateway -p 6432 ...`` works; with
``--shell``, ``export PGUSER=dbc_… PGPASSWORD=…`` (``eval "$(piigate login --shell ...)"``): under
that user name the gateway signs the client in with SCRAM-SHA-256, without TLS too. A login the
policy asks to step up is refused here: it is completed in the browser.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated
from urllib.parse import urlsplit

import typer

from piigate.cli.common import ConfigOpt, fail

__all__ = ["login"]

URL_ENV = "PIIGATE_URL"


def login(
    user: Annotated[str, typer.Option("--user", "-u", help="Your piigate user name.")],
    url: Annotated[
        str | None,
        typer.Option(help="The piigate service (default: PIIGATE_URL, or the config's)."),
    ] = None,
    config: ConfigOpt = None,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell", help="Print PGUSER and PGPASSWORD exports (the user signs in with SCRAM)."
        ),
    ] = False,
) -> None:
    """Print a password for the PostgreSQL gateway (a database credential)."""
    import httpx

    base = _base_url(url, config)
    password = _password()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    try:
        with httpx.Client(base_url=base, headers={"Origin": origin}, timeout=10.0) as client:
            answer = client.post("/v1/login", json={"username": user, "password": password})
            if answer.status_code == 401 and "login_ticket" in answer.text:
                fail("this login needs a step-up: log in at the console first")
            if answer.status_code != 200:
                fail(f"the login was refused ({answer.status_code})")
            issued = client.post("/v1/db-credentials")
    except httpx.HTTPError as exc:
        fail(f"cannot reach {base}: {type(exc).__name__}")
    if issued.status_code != 201:
        fail(f"no database credential ({issued.status_code})")
    body = issued.json()
    if shell:
        typer.echo(f"export PGUSER={body['user']} PGPASSWORD={body['password']}")
    else:
        typer.echo(body["password"])


def _base_url(url: str | None, config: str | None) -> str:
    if url is None:
        url = os.environ.get(URL_ENV)
    if url is None and config is not None:
        from piigate.cli.common import settings_from

        url = settings_from(config).public_url
    url = (url or "http://127.0.0.1:8080").rstrip("/")
    if urlsplit(url).scheme not in ("http", "https"):
        fail("--url must be an http(s):// URL")
    return url


def _password() -> str:
    if sys.stdin.isatty():
        text: str = typer.prompt("password", hide_input=True, err=True)
    else:
        text = sys.stdin.readline().rstrip("\n")
    if not text:
        fail("no password given")
    return text
