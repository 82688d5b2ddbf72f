"""A real OpenID provider for the end-to-end tests: panva's ``oidc-provider`` from npm, run by
``idp/idp.mjs`` on a free loopback port (imported by name: ``tests/e2e`` is on ``sys.path``).

``oidc_idp`` (session-scoped) installs the pinned package into ``tests/e2e/idp/node_modules``
with ``npm ci`` the first time, starts the provider and yields an :class:`OidcIdp` whose
``token(...)`` runs the whole authorization code + PKCE flow over httpx, answering the
provider's login "page" as a script: no browser. Without node/npm, or when the install fails,
the tests skip with the reason shown, unless ``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from serve_support import stop
from services_support import unavailable

__all__ = ["IDP_DIR", "ConsoleClient", "IdpRefused", "OidcIdp", "oidc_idp", "running_idp"]

IDP_DIR = Path(__file__).resolve().with_name("idp")
AUDIENCE = "customers-api"
SCOPES = "customers:read customers:write"
CLIENT_ID = "piigate-e2e"
# Never contacted: the flow stops at the redirect and reads the code from its query.
REDIRECT_URI = "http://127.0.0.1/piigate-e2e/callback"
_READY_SECONDS = 20
_INSTALL_SECONDS = 300
_MAX_HOPS = 10


class IdpRefused(Exception):
    """The provider answered the flow with an OAuth error (``error`` is its code)."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error


@dataclass(frozen=True)
class OidcIdp:
    """A running provider: where it is, and a client that gets access tokens from it."""

    issuer: str
    jwks_url: str
    authorization_endpoint: str
    token_endpoint: str
    audience: str
    resource: str
    scope: str
    client_id: str
    redirect_uri: str

    def token(
        self,
        *,
        subject: str,
        acr: str,
        scope: str = SCOPES,
        auth_age: int = 0,
        max_age: int | None = None,
        acr_values: str | None = None,
    ) -> str:
        """An access token (JWT) for ``subject`` after a login that reached ``acr``.

        The client asks for ``acr_values`` (by default ``acr`` itself) and ``max_age``; the
        user logs in ``auth_age`` seconds ago at ``acr``. Raises :class:`IdpRefused` when the
        provider answers with an error instead of a code or a token.
        """
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        state = secrets.token_urlsafe(16)
        params = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": f"openid {scope}",
            "resource": self.resource,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "state": state,
            "acr_values": acr_values or acr,
        }
        if max_age is not None:
            params["max_age"] = str(max_age)
        login = {"login": subject, "acr": acr, "auth_age": str(auth_age)}
        # A new client per flow: a new browser, so no login session carries over.
        with httpx.Client(timeout=10) as http:
            query = self._authorize(http, params, login)
            if query.get("state") != state:
                raise IdpRefused("state_mismatch")
            answer = http.post(
                self.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"],
                    "redirect_uri": self.redirect_uri,
                    "client_id": self.client_id,
                    "code_verifier": verifier,
                },
            )
        body = answer.json()
        if answer.status_code != 200:
            raise IdpRefused(
                body.get("error", str(answer.status_code)), body.get("error_description", "")
            )
        token: str = body["access_token"]
        return token

    def _authorize(
        self, http: httpx.Client, params: dict[str, str], login: dict[str, str]
    ) -> dict[str, str]:
        """Follows the authorization request's redirects, answering the login interaction,
        until the provider redirects to the client; the redirect's query parameters."""
        response = http.get(self.authorization_endpoint, params=params)
        location = self.follow_login(http, response, login, back_to=self.redirect_uri)
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if "error" in query:
            raise IdpRefused(query["error"], query.get("error_description", ""))
        return query

    def follow_login(
        self, http: httpx.Client, response: httpx.Response, login: dict[str, str], *, back_to: str
    ) -> str:
        """Follows the redirects from ``response`` (an authorization request's, or a client's
        redirect to one), answering the login interaction with ``login``, until the provider
        sends the browser to ``back_to``: that redirect's URL."""
        for _ in range(_MAX_HOPS):
            if response.status_code not in (302, 303):
                raise IdpRefused(*_error_of(response))
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(back_to):
                return location
            if urlsplit(location).path.startswith("/interaction/"):
                prompt = http.get(location).json()
                if prompt.get("prompt") != "login":
                    raise IdpRefused("unexpected_prompt", json.dumps(prompt))
                response = http.post(location, data=login)
            else:
                response = http.get(location)
        raise IdpRefused("too_many_redirects")


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return str(response.status_code), response.text[:200]
    return body.get("error", str(response.status_code)), body.get("error_description", "")


def _installed_version() -> str | None:
    """The installed oidc-provider's version, if an install finished (npm writes its hidden
    lockfile last)."""
    modules = IDP_DIR / "node_modules"
    manifest = modules / "oidc-provider" / "package.json"
    if not (modules / ".package-lock.json").exists():
        return None
    try:
        version: str = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One ``npm ci`` at a time into ``idp/node_modules``: test processes running side by side
    (pytest-xdist workers, or two runs) would otherwise install over each other. The lock file
    is outside node_modules, which ``npm ci`` deletes first."""
    key = hashlib.sha256(str(IDP_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"piigate-idp-install-{key}.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure_installed(npm: str) -> None:
    """``npm ci`` into ``idp/node_modules`` when the pinned oidc-provider is not there."""
    with _install_lock():
        _install_if_missing(npm)


def _install_if_missing(npm: str) -> None:
    wanted = json.loads((IDP_DIR / "package.json").read_text())["dependencies"]["oidc-provider"]
    if _installed_version() == wanted:
        return
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=IDP_DIR,
            capture_output=True,
            text=True,
            timeout=_INSTALL_SECONDS,
        )
    except subprocess.TimeoutExpired:
        unavailable(f"npm ci in {IDP_DIR} took over {_INSTALL_SECONDS} s (offline?)")
        return
    if done.returncode != 0:
        # A half-done install must not pass for a done one next time.
        shutil.rmtree(IDP_DIR / "node_modules", ignore_errors=True)
        lines = done.stderr.strip().splitlines()
        codes = [line for line in lines if line.startswith("npm error code")]
        why = (codes or lines or [f"exit {done.returncode}"])[0]
        unavailable(f"npm ci in {IDP_DIR} failed (offline?): {why}")


def _ready_issuer(proc: subprocess.Popen[str], log: Path) -> str:
    """The issuer from the provider's ``IDP READY <issuer>`` line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.1)
        if readable:
            line = proc.stdout.readline()
            if line.startswith("IDP READY "):
                return line.split()[2]
            if not line:  # the process closed its output: it exited
                break
    proc.kill()
    raise AssertionError(f"the OpenID provider did not start: {log.read_text()}")


@dataclass(frozen=True)
class ConsoleClient:
    """A second client at the provider, for piigate's console sign-in (ID tokens)."""

    client_id: str
    redirect_uri: str
    secret: str | None = None


@contextlib.contextmanager
def running_idp(
    log: Path,
    *,
    audience: str = AUDIENCE,
    scopes: str = SCOPES,
    redirect_uri: str = REDIRECT_URI,
    console: ConsoleClient | None = None,
) -> Iterator[OidcIdp]:
    """The provider on a free loopback port, its errors in ``log``; stopped afterwards. With
    ``console``, the provider knows that client too."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are needed for the OpenID provider (tests/e2e/idp)")
    assert node is not None and npm is not None
    _ensure_installed(npm)
    resource = f"urn:piigate:resource:{audience}"
    env = dict(
        os.environ,
        IDP_REDIRECT_URI=redirect_uri,
        IDP_CLIENT_ID=CLIENT_ID,
        IDP_AUDIENCE=audience,
        IDP_RESOURCE=resource,
        IDP_SCOPES=scopes,
    )
    if console is not None:
        env.update(IDP_CONSOLE_CLIENT_ID=console.client_id)
        env.update(IDP_CONSOLE_REDIRECT_URI=console.redirect_uri)
        if console.secret is not None:
            env.update(IDP_CONSOLE_CLIENT_SECRET=console.secret)
    with log.open("w") as errors:
        proc = subprocess.Popen(
            [node, "idp.mjs", "0"],
            cwd=IDP_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        issuer = _ready_issuer(proc, log)
        metadata = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        yield OidcIdp(
            issuer=issuer,
            jwks_url=metadata["jwks_uri"],
            authorization_endpoint=metadata["authorization_endpoint"],
            token_endpoint=metadata["token_endpoint"],
            audience=audience,
            resource=resource,
            scope=scopes,
            client_id=CLIENT_ID,
            redirect_uri=redirect_uri,
        )
    finally:
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="session")
def oidc_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    """One provider for the whole session (audience ``customers-api``, scopes
    ``customers:read customers:write``); skips without node/npm unless services are required."""
    with running_idp(tmp_path_factory.mktemp("idp") / "idp.log") as idp:
        yield idp
