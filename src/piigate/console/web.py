"""What every console page shares: the templates, the security headers, the person viewing,
and where a page may send the browser next (``return_to``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote, urlsplit

from fastapi import Depends
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from piigate import __version__
from piigate.api.auth import SESSION_COOKIE
from piigate.api.services import Services, get_services
from piigate.callers import Caller
from piigate.console.csrf import CSRF_FIELD, csrf_token, keep_nonce
from piigate.origins import web_origin

__all__ = [
    "SECURITY_ROLES",
    "STATIC_DIR",
    "ConsoleHeaders",
    "NotSecurityTeam",
    "NotSignedIn",
    "SecurityTeam",
    "SignedIn",
    "Viewer",
    "content_security_policy",
    "page",
    "require_security",
    "require_viewer",
    "safe_return_to",
    "sign_in_redirect",
    "viewer_of",
]

PACKAGE_DIR: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = PACKAGE_DIR / "static"
# Roles that may open the security team's pages.
SECURITY_ROLES: Final = frozenset({"admin", "security"})

_templates = Environment(
    loader=FileSystemLoader(PACKAGE_DIR / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def content_security_policy(form_origins: Iterable[str] = ()) -> str:
    """The console's policy: its own scripts, styles and images only, no inline script, no
    framing, forms posted only to itself (and to ``form_origins``, where a step-up returns)."""
    forms = " ".join(["'self'", *sorted(set(form_origins))])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; font-src 'self'; form-action {forms}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


_STATIC_HEADERS: Final = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
# Pages of FastAPI's own (the API docs) load their script from a CDN: not the console's policy.
_OWN_POLICY_EXEMPT: Final = ("/docs", "/openapi.json")


class ConsoleHeaders:
    """Clickjacking, sniffing and referrer protection on every response, and the console's
    Content-Security-Policy on every response that has none of its own."""

    def __init__(self, app: ASGIApp, *, form_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.policy = content_security_policy(form_origins).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_OWN_POLICY_EXEMPT):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _STATIC_HEADERS if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", self.policy))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person signed in to the console (their session cookie), as the API knows them."""

    caller: Caller

    @property
    def subject_id(self) -> str:
        return self.caller.id

    @property
    def roles(self) -> frozenset[str]:
        return self.caller.roles

    @property
    def is_security(self) -> bool:
        return bool(self.caller.roles & SECURITY_ROLES)


class NotSignedIn(Exception):
    """No console session: the page sends the browser to sign in (``sign_in_redirect``)."""


class NotSecurityTeam(Exception):
    """A signed-in person without a security role opened a security team page (403)."""


async def viewer_of(request: Request) -> Viewer | None:
    """The person whose console session cookie came with ``request``; None without one (an
    unknown, expired or ended session too). Bearer tokens are the API's, not the console's."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    found = await get_services(request).logins.session_for(token)
    if found is None:
        return None
    return Viewer(Caller.person(found.subject, found.session))


async def require_viewer(request: Request) -> Viewer:
    """A dependency: the signed-in person, or :class:`NotSignedIn` (to the sign-in page)."""
    viewer = await viewer_of(request)
    if viewer is None:
        raise NotSignedIn
    return viewer


async def require_security(request: Request) -> Viewer:
    """A dependency: a signed-in person with a role of ``SECURITY_ROLES``."""
    viewer = await require_viewer(request)
    if not viewer.is_security:
        raise NotSecurityTeam
    return viewer


SignedIn = Annotated[Viewer, Depends(require_viewer)]
SecurityTeam = Annotated[Viewer, Depends(require_security)]


def sign_in_redirect(request: Request) -> RedirectResponse:
    """To the sign-in page, coming back to this page afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def safe_return_to(target: str | None, *, public_url: str, allowed: Iterable[str] = ()) -> str:
    """Where a page may send the browser after it is done: a path on this origin, or a URL on
    this origin or on one of the ``allowed`` origins; anything else (another site, a
    scheme-relative ``//host``, backslashes, control characters, ``javascript:``) is ``/``."""
    if not target or len(target) > 2048:
        return "/"
    if any(ord(c) < 0x21 or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    if not parts.scheme and not parts.netloc:
        return target if target.startswith("/") and not target.startswith("//") else "/"
    try:
        origin = web_origin(target)
    except ValueError:
        return "/"
    origins = {web_origin(public_url), *allowed}
    return target if origin in origins else "/"


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    viewer: Viewer | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """``template`` rendered with ``context``, the viewer, and a CSRF token for its forms.
    Pages are never cached: they show a person's own state."""
    services: Services = get_services(request)
    values: dict[str, Any] = {
        "viewer": viewer,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request, services),
        "path": request.url.path,
        "version": __version__,
        **(context or {}),
    }
    body = _templates.get_template(template).render(values)
    response = HTMLResponse(body, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    keep_nonce(request, response, secure=services.settings.public_url.startswith("https://"))
    return response
