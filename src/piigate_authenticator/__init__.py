"""``piigate authenticator``: the reference push authenticator (the "trusted app", CONTRACT §1).

It does what a phone app does, from a terminal: ``enroll URI`` creates a device key pair and
completes the enrollment the link was made for; ``pending`` shows the pushes waiting (who, what,
how much to whom — never the number); ``approve ID NUMBER`` answers with the number the step-up
page shows; ``deny ID`` answers "this wasn't me". Every request is signed with the device key
(:mod:`piigate.factors.push.protocol`).

Keys live in one JSON file — ``--file``, else ``PIIGATE_AUTHENTICATOR_FILE``, else
``~/.config/piigate/authenticator.json`` — created with mode 0600 (its directory 0700) and
refused when others can read it, as ssh does: it holds the devices' private keys, one per
enrollment, with the server each belongs to.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from piigate.factors.push.protocol import (
    DEVICE_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeviceAlgorithm,
    DeviceKeyError,
    DevicePrivateKey,
    canonical_request,
    generate_device_key,
    load_private_key,
    new_nonce,
    parse_enroll_uri,
    private_key_pem,
    public_jwk,
    sign_request,
)

__all__ = [
    "DEFAULT_FILE",
    "FILE_ENV",
    "Authenticator",
    "AuthenticatorError",
    "DeviceEntry",
    "KeyFile",
    "authenticator_app",
]

DEFAULT_FILE = Path("~/.config/piigate/authenticator.json")
FILE_ENV = "PIIGATE_AUTHENTICATOR_FILE"
_FORMAT_VERSION = 1
_TIMEOUT = 10.0
_MAX_WAIT = 30
_PUSH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class AuthenticatorError(Exception):
    """A one-line reason the command failed (never a key, token or number)."""


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One enrolled device: the server it belongs to, its id there, and its private key."""

    server: str
    device_id: str
    alg: str
    name: str
    subject: str
    private_key: str = field(repr=False)  # PKCS#8 PEM

    def key(self) -> DevicePrivateKey:
        try:
            return load_private_key(self.private_key)
        except DeviceKeyError as exc:
            raise AuthenticatorError(f"device {self.device_id}: {exc}") from None


class KeyFile:
    """The authenticator's key file: written whole (temporary file + rename), mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    def load(self) -> list[DeviceEntry]:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuthenticatorError(f"{self.path}: cannot read: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuthenticatorError(
                f"{self.path} is accessible by other users; run: chmod 600 {self.path}"
            )
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            devices = data["devices"] if data.get("version") == _FORMAT_VERSION else None
            if not isinstance(devices, list):
                raise ValueError("unknown format")
            return [DeviceEntry(**entry) for entry in devices]
        except OSError as exc:
            raise AuthenticatorError(f"{self.path}: cannot read: {exc.strerror}") from None
        except (ValueError, TypeError, KeyError, AttributeError):
            raise AuthenticatorError(f"{self.path}: not a piigate authenticator file") from None

    def save(self, devices: list[DeviceEntry]) -> None:
        body = json.dumps(
            {"version": _FORMAT_VERSION, "devices": [asdict(d) for d in devices]}, indent=2
        )
        directory = self.path.parent
        temporary = directory / f".{self.path.name}.{os.getpid()}.tmp"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created 0600 from the start: the keys are never readable by others, not even
            # between the write and a chmod.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)  # O_CREAT's mode only applies to a new file
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise AuthenticatorError(f"{self.path}: cannot write: {exc.strerror}") from None


class Authenticator:
    """The device side of the push protocol over a synchronous httpx client.

    ``transport`` and ``clock`` (Unix seconds) are for tests; the command line uses the network
    and the system clock.
    """

    def __init__(
        self,
        keys: KeyFile,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.transport = transport
        self.clock = clock

    # -- commands -------------------------------------------------------------------------------
    def enroll(self, uri: str, *, name: str, alg: DeviceAlgorithm) -> DeviceEntry:
        """Complete the enrollment of ``uri`` with a new key pair; save the key."""
        try:
            link = parse_enroll_uri(uri)
        except ValueError as exc:
            raise AuthenticatorError(str(exc)) from None
        devices = self.keys.load()  # refuse a bad key file before the one-time token is spent
        key = generate_device_key(alg)
        body = {"token": link.token, "public_key": public_jwk(key), "alg": alg.value, "name": name}
        answer = self._call(link.url, "POST", "/v1/devices", key=key, device_id="", body=body)
        entry = DeviceEntry(
            server=link.url,
            device_id=str(answer["device_id"]),
            alg=alg.value,
            name=name,
            subject=str(answer.get("subject", "")),
            private_key=private_key_pem(key),
        )
        try:
            self.keys.save([*devices, entry])
        except AuthenticatorError as exc:
            raise AuthenticatorError(
                f"enrolled as {entry.device_id} but the key could not be saved ({exc}); "
                "remove that factor and enrol again"
            ) from None
        return entry

    def pending(self, *, wait: int = 0) -> list[tuple[DeviceEntry, dict[str, Any]]]:
        """The pushes waiting for every enrolled device (each waits up to ``wait`` seconds)."""
        found: list[tuple[DeviceEntry, dict[str, Any]]] = []
        for entry in self._devices():
            answer = self._device_call(entry, "GET", f"/v1/devices/pending?wait={wait}")
            pushes = answer.get("pushes", [])
            found.extend((entry, push) for push in pushes if isinstance(push, dict))
        return found

    def answer(self, push_id: str, *, approve: bool, number: int | None = None) -> str:
        """Answer ``push_id`` from the device it was sent to; the challenge's new state."""
        body: dict[str, Any] = {"decision": "approve" if approve else "deny"}
        if approve:
            body["number"] = number
        path = f"/v1/devices/pushes/{push_id}"
        for entry in self._devices():
            try:
                answer = self._device_call(entry, "POST", path, body=body, missing_ok=True)
            except _NotHere:
                continue
            return str(answer.get("state", ""))
        raise AuthenticatorError(f"no enrolled device has a push {push_id}")

    # -- requests -------------------------------------------------------------------------------
    def _devices(self) -> list[DeviceEntry]:
        devices = self.keys.load()
        if not devices:
            raise AuthenticatorError(
                f"no device enrolled in {self.keys.path}; run: piigate authenticator enroll URI"
            )
        return devices

    def _device_call(
        self,
        entry: DeviceEntry,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any]:
        return self._call(
            entry.server,
            method,
            path,
            key=entry.key(),
            device_id=entry.device_id,
            body=body,
            missing_ok=missing_ok,
        )

    def _call(
        self,
        server: str,
        method: str,
        path: str,
        *,
        key: DevicePrivateKey,
        device_id: str,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any]:
        """One signed request; the JSON answer, or :class:`AuthenticatorError`."""
        with self._client() as client:
            request = client.build_request(method, server + path, json=body)
            timestamp = int(self.clock())
            nonce = new_nonce()
            message = canonical_request(
                device_id=device_id,
                method=method,
                target=request.url.raw_path.decode("ascii"),
                timestamp=timestamp,
                nonce=nonce,
                body=request.content,
            )
            if device_id:
                request.headers[DEVICE_ID_HEADER] = device_id
            request.headers[TIMESTAMP_HEADER] = str(timestamp)
            request.headers[NONCE_HEADER] = nonce
            request.headers[SIGNATURE_HEADER] = sign_request(key, message)
            try:
                response = client.send(request)
            except httpx.HTTPError as exc:
                raise AuthenticatorError(f"cannot reach {server}: {type(exc).__name__}") from None
        if missing_ok and response.status_code == 404:
            raise _NotHere
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not response.is_success:
            detail = answer.get("detail") if isinstance(answer, dict) else None
            raise AuthenticatorError(f"{server}: {detail or f'HTTP {response.status_code}'}")
        if not isinstance(answer, dict):
            raise AuthenticatorError(f"{server}: the answer is not a JSON object")
        return answer

    @contextlib.contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        # A long poll holds the request up to _MAX_WAIT seconds.
        timeout = httpx.Timeout(_TIMEOUT, read=_TIMEOUT + _MAX_WAIT)
        with httpx.Client(transport=self.transport, timeout=timeout) as client:
            yield client


class _NotHere(Exception):
    """The server does not know the push for this device (404): try the next device."""


# -- the command line ---------------------------------------------------------------------------
authenticator_app = typer.Typer(
    help="The reference push authenticator (a device key in a local file).",
    no_args_is_help=True,
)

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        envvar=FILE_ENV,
        help=f"The key file (default {DEFAULT_FILE}).",
        show_default=False,
    ),
]


def _authenticator(file: Path | None) -> Authenticator:
    return Authenticator(KeyFile(file or DEFAULT_FILE))


def _fail(message: str) -> NoReturn:
    typer.echo(f"piigate: error: {message}", err=True)
    raise typer.Exit(1)


def _enroll_uri(value: str) -> str:
    try:
        parse_enroll_uri(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _push_id(value: str) -> str:
    """A push id goes into the request path: only the characters ids are made of."""
    if _PUSH_ID.fullmatch(value) is None:
        raise typer.BadParameter("not a push id (see: piigate authenticator pending)")
    return value


def _describe(push: dict[str, Any]) -> str:
    """One line per push: id, who, what, on which record, how much to whom."""
    resource = push.get("resource") or {}
    target = "/".join(str(part) for part in (resource.get("type"), resource.get("id")) if part)
    parts = [
        str(push.get("id")),
        f"for {push.get('subject')}",
        str(push.get("action")),
        target or "-",
        "pii: " + (", ".join(push.get("pii") or []) or "-"),
    ]
    txn = push.get("transaction")
    if isinstance(txn, dict):
        amount = " ".join(str(v) for v in (txn.get("amount"), txn.get("currency")) if v)
        parts.append(f"{amount} to {txn.get('payee') or '?'}")
    context = push.get("context") or {}
    if context.get("requested_by"):
        parts.append(f"asked by {context['requested_by']}")
    return "  ".join(parts)


@authenticator_app.command("enroll")
def enroll(
    uri: Annotated[
        str,
        typer.Argument(
            metavar="URI", callback=_enroll_uri, help="The piigate-push://enroll?... link."
        ),
    ],
    name: Annotated[
        str, typer.Option("--name", help="A name for this device, shown to the user.")
    ] = "piigate authenticator",
    alg: Annotated[
        DeviceAlgorithm, typer.Option("--alg", help="Key type: ES256 (P-256) or EdDSA (Ed25519).")
    ] = DeviceAlgorithm.ES256,
    file: FileOpt = None,
) -> None:
    """Enrol this device with the link from POST /v1/factors/push."""
    if not 1 <= len(name) <= 64:
        raise typer.BadParameter("must be 1 to 64 characters", param_hint="--name")
    try:
        entry = _authenticator(file).enroll(uri, name=name, alg=alg)
    except AuthenticatorError as exc:
        _fail(str(exc))
    typer.echo(f"enrolled device {entry.device_id} for {entry.subject} at {entry.server}")


@authenticator_app.command("pending")
def pending(
    wait: Annotated[
        int, typer.Option("--wait", min=0, max=_MAX_WAIT, help="Wait up to N seconds for one.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    file: FileOpt = None,
) -> None:
    """Show the pushes waiting for approval (type the number the step-up page shows)."""
    try:
        found = _authenticator(file).pending(wait=wait)
    except AuthenticatorError as exc:
        _fail(str(exc))
    if not found and not as_json:
        typer.echo("no pushes waiting", err=True)
    for entry, push in found:
        if as_json:
            typer.echo(json.dumps({**push, "device_id": entry.device_id}, sort_keys=True))
        else:
            typer.echo(_describe(push))


@authenticator_app.command("approve")
def approve(
    push_id: Annotated[
        str,
        typer.Argument(metavar="ID", callback=_push_id, help="The push id (from pending)."),
    ],
    number: Annotated[
        int, typer.Argument(metavar="NUMBER", min=10, max=99, help="The number on the page.")
    ],
    file: FileOpt = None,
) -> None:
    """Approve a push with the number the step-up page shows."""
    try:
        state = _authenticator(file).answer(push_id, approve=True, number=number)
    except AuthenticatorError as exc:
        _fail(str(exc))
    typer.echo(f"{push_id}: {state}")


@authenticator_app.command("deny")
def deny(
    push_id: Annotated[
        str,
        typer.Argument(metavar="ID", callback=_push_id, help="The push id (from pending)."),
    ],
    file: FileOpt = None,
) -> None:
    """Deny a push you did not start ("this wasn't me"): the step-up fails and is reported."""
    try:
        state = _authenticator(file).answer(push_id, approve=False)
    except AuthenticatorError as exc:
        _fail(str(exc))
    typer.echo(f"{push_id}: {state}")
