"""Grant tokens: the signed, self-contained form of a :class:`~piigate.model.Grant`.

A grant is a JWT (RFC 7519) signed with ES256 (RFC 7518 §3.4) by the keyring's current signing
key, with ``typ: piigate-grant+jwt`` (RFC 8725 §3.11: explicit typing, so no other JWT signed by
the same key can pass for a grant) and the ``kid`` of that key. Claims:

=========== ==========================================================================
``iss``     this deployment (``issuer``)
``sub``     the subject id
``jti``     the grant id
``iat``     ``auth_time`` (when the step-up was proven), epoch seconds
``auth_time`` the same (OIDC Core §2 name, for readers that know it)
``exp``     expiry, epoch seconds
``lvl``     the policy level name (``aal2``...)
``amr``     authentication methods (RFC 8176 values)
``scope``   sorted ``[pii_class, action]`` pairs the grant covers
``sid``     session id (omitted when None)
``dev``     device id (omitted when None)
``bnd``     binding digest, for ``max_age: 0`` grants (omitted when None)
``cid``     the challenge that produced the grant (omitted when None)
``aud``     who the grant is for (RFC 7519 §4.1.3): the API key id of the app that asked
            for the decision, or ``user:<subject>`` for a person's own request
            (:attr:`~piigate.callers.Caller.audience`; omitted when None)
=========== ==========================================================================

Times are whole seconds: sub-second parts of ``auth_time`` and ``expires_at`` are dropped.

:func:`verify_grant` is pure (no clock, no I/O): it checks the signature, type, issuer, expiry,
subject and binding, and raises :class:`GrantRejected` with an exact :class:`GrantRejection`
reason for the audit log; clients only ever see the vague problem response. The audience is
returned, not checked: whether a grant for another requester counts is the policy's to say
(the engine), and piigate's own routes accept only the person's own (``factors.enrollment``).

Bound grants (those with a binding digest, :attr:`Grant.single_use`) are single use
(CONTRACT.md §4.3). Verification cannot know whether a grant was already spent: the caller
consumes the grant id in its ledger after a successful verification and, when the ledger says it
was already spent, raises ``GrantRejected(GrantRejection.REUSED)`` itself.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey

from piigate.crypto.keyring import Keyring
from piigate.errors import Unauthorized
from piigate.jsontext import loads
from piigate.model import AccessRequest, Approval, Challenge, Grant

__all__ = [
    "GRANT_ALG",
    "GRANT_TYPE",
    "GrantRejected",
    "GrantRejection",
    "KeyringGrantVerifier",
    "grant_mismatch",
    "grant_of_approval",
    "issue_grant",
    "verify_grant",
]

log = structlog.get_logger("piigate.grants")

GRANT_TYPE = "piigate-grant+jwt"
GRANT_ALG = "ES256"
# Clock skew tolerated between the node that issued a grant and the one verifying it.
IAT_LEEWAY_SECONDS = 60
# Far above any real grant (a few hundred bytes); bounds the work an attacker can cause.
MAX_TOKEN_LENGTH = 8192
_HEADER_KEYS = frozenset({"alg", "typ", "kid"})
# The bytes of each of R and S in an ES256 signature (P-256).
_ES256_PART = 32


class GrantRejection(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_TYPE = "wrong_type"
    WRONG_ISSUER = "wrong_issuer"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_SUBJECT = "wrong_subject"
    WRONG_BINDING = "wrong_binding"
    # Raised by the caller, which owns the ledger of spent single-use grants.
    REUSED = "reused"


class GrantRejected(Unauthorized):
    """A grant token was not accepted. ``reason`` is exact (for audit); ``detail`` is vague."""

    code: ClassVar[str] = "grant_rejected"
    title: ClassVar[str] = "Grant not accepted"

    def __init__(self, reason: GrantRejection) -> None:
        super().__init__("The presented grant is not valid.")
        self.reason = reason

    def __str__(self) -> str:
        return f"grant rejected: {self.reason.value}"

    def __repr__(self) -> str:
        return f"GrantRejected({self.reason!s})"


def grant_of_approval(
    challenge: Challenge, approval: Approval, *, grant_id: str, ttl: int
) -> Grant:
    """The grant an approved challenge yields: the approval's level and ``amr`` from its
    ``auth_time``, for ``ttl`` seconds (no longer than the rule's ``max_age``: an older grant
    would no longer meet the rule that asked for it), scoped to the challenge's PII classes
    and action, bound like the challenge, and for whoever opened it (its audience)."""
    required = challenge.requirement
    if required.max_age:
        ttl = min(ttl, required.max_age)
    scope = (
        frozenset((cls, challenge.action.value) for cls in challenge.pii)
        if challenge.pii
        else frozenset({("*", challenge.action.value)})
    )
    return Grant(
        id=grant_id,
        subject_id=challenge.subject_id,
        level=approval.level,
        amr=approval.amr,
        auth_time=approval.auth_time,
        expires_at=approval.auth_time + timedelta(seconds=ttl),
        scope=scope,
        session_id=challenge.session_id,
        device_id=challenge.device_id,
        binding=required.binding,
        challenge_id=challenge.id,
        audience=challenge.audience,
    )


def issue_grant(grant: Grant, *, keyring: Keyring, issuer: str) -> str:
    """Sign ``grant`` with the keyring's current signing key."""
    auth_time = _epoch(grant.auth_time)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": grant.subject_id,
        "jti": grant.id,
        "iat": auth_time,
        "auth_time": auth_time,
        "exp": _epoch(grant.expires_at),
        "lvl": grant.level,
        "amr": list(grant.amr),
        "scope": [[pii, action] for pii, action in sorted(grant.scope)],
    }
    optional = {
        "sid": grant.session_id,
        "dev": grant.device_id,
        "bnd": grant.binding,
        "cid": grant.challenge_id,
        "aud": grant.audience,
    }
    claims.update({name: value for name, value in optional.items() if value is not None})
    header = {"alg": GRANT_ALG, "typ": GRANT_TYPE, "kid": keyring.signing_kid}
    return _signed_compact(header, claims, keyring.sign_key())


def _signed_compact(header: Mapping[str, Any], claims: Mapping[str, Any], key: ECKey) -> str:
    """The JWS compact serialisation (RFC 7515 §7.1) of ``claims`` under ``header``, signed
    ES256 (RFC 7518 §3.4: the signature is R || S, 32 bytes each): byte for byte what
    ``joserfc.jwt.encode`` writes (its JSON forms: the header ASCII-escaped, the claims not;
    no spaces), which :func:`verify_grant` decodes. Built here because joserfc's generic path
    (key guessing, registry and header checks per token) costs about as much as the ECDSA
    signature itself."""
    private = key.private_key
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError("an EC private key signs grants")
    head = json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    body = json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    signing_input = _b64url(head) + b"." + _b64url(body)
    r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(_ES256_PART, "big") + s.to_bytes(_ES256_PART, "big")
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def _b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def verify_grant(
    token: str,
    *,
    keyring: Keyring,
    issuer: str,
    now: datetime,
    expected_subject: str,
    expected_binding: str | None = None,
) -> Grant:
    """Check a grant token and return the grant it carries, or raise :class:`GrantRejected`.

    ``expected_binding`` is the binding digest of the request at hand; a bound grant is rejected
    when it differs. Single use is the caller's job (see the module docstring).
    """
    at = _epoch(now)
    header = _unverified_header(token)
    # Only ES256, and only our header shape: no "none", no HMAC keyed with a public key (RFC 8725
    # §3.1), no "crit"/"b64" (RFC 7797) or embedded "jwk"/"jku" tricks.
    if header.get("alg") != GRANT_ALG:
        raise GrantRejected(GrantRejection.BAD_SIGNATURE)
    if not set(header) <= _HEADER_KEYS or not isinstance(header.get("kid"), str):
        raise GrantRejected(GrantRejection.MALFORMED)
    key = keyring.verify_key(header["kid"])
    if key is None:
        raise GrantRejected(GrantRejection.UNKNOWN_KEY)
    try:
        # joserfc's jwt.decode checks only the signature; the claims are checked below against
        # `now` (joserfc's JWTClaimsRegistry would read the wall clock).
        decoded = jwt.decode(token, key, algorithms=[GRANT_ALG])
    except BadSignatureError:
        raise GrantRejected(GrantRejection.BAD_SIGNATURE) from None
    except (JoseError, ValueError, TypeError):
        raise GrantRejected(GrantRejection.MALFORMED) from None
    # Header and claims are authenticated from here on.
    if decoded.header.get("typ") != GRANT_TYPE:
        raise GrantRejected(GrantRejection.WRONG_TYPE)
    claims = decoded.claims
    grant = _grant_from_claims(claims)
    if not _same(claims["iss"], issuer):
        raise GrantRejected(GrantRejection.WRONG_ISSUER)
    # RFC 7519 §4.1.4: the token must not be accepted on or after the expiry time.
    if at >= claims["exp"]:
        raise GrantRejected(GrantRejection.EXPIRED)
    if claims["iat"] > at + IAT_LEEWAY_SECONDS:
        raise GrantRejected(GrantRejection.NOT_YET_VALID)
    if not _same(grant.subject_id, expected_subject):
        raise GrantRejected(GrantRejection.WRONG_SUBJECT)
    if (
        grant.binding is not None
        and expected_binding is not None
        and not _same(grant.binding, expected_binding)
    ):
        raise GrantRejected(GrantRejection.WRONG_BINDING)
    return grant


def _unverified_header(token: object) -> Mapping[str, Any]:
    """Decode the protected header, to pick the key. Nothing in it is trusted yet."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise GrantRejected(GrantRejection.MALFORMED)
    segment = token.split(".", 1)[0]
    try:
        raw = base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)
        header = loads(raw)
    except (binascii.Error, ValueError):
        raise GrantRejected(GrantRejection.MALFORMED) from None
    if not isinstance(header, dict):
        raise GrantRejected(GrantRejection.MALFORMED)
    return header


def _grant_from_claims(claims: Mapping[str, Any]) -> Grant:
    try:
        for name in ("iss", "sub", "jti", "lvl"):
            _require(isinstance(claims[name], str))
        for name in ("iat", "auth_time", "exp"):
            _require(_is_int(claims[name]))
        # ``aud`` may be an array in other JWTs (RFC 7519 §4.1.3); piigate issues one string.
        for name in ("sid", "dev", "bnd", "cid", "aud"):
            _require(isinstance(claims.get(name, ""), str))
        amr, scope = claims["amr"], claims["scope"]
        _require(isinstance(amr, list) and all(isinstance(m, str) for m in amr))
        _require(isinstance(scope, list))
        pairs: set[tuple[str, str]] = set()
        for pair in scope:
            _require(isinstance(pair, list) and len(pair) == 2)
            _require(all(isinstance(part, str) for part in pair))
            pairs.add((pair[0], pair[1]))
        return Grant(
            id=claims["jti"],
            subject_id=claims["sub"],
            level=claims["lvl"],
            amr=tuple(amr),
            auth_time=datetime.fromtimestamp(claims["auth_time"], UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            scope=frozenset(pairs),
            session_id=claims.get("sid"),
            device_id=claims.get("dev"),
            binding=claims.get("bnd"),
            challenge_id=claims.get("cid"),
            audience=claims.get("aud"),
        )
    except (KeyError, ValueError, OverflowError, OSError):
        raise GrantRejected(GrantRejection.MALFORMED) from None


def _require(condition: bool) -> None:
    if not condition:
        raise ValueError("invalid grant claim")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same(actual: str, expected: str) -> bool:
    return hmac.compare_digest(actual.encode(), expected.encode())


def _epoch(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("grant times must be timezone-aware")
    return int(at.timestamp() // 1)


class KeyringGrantVerifier:
    """The engine's ``GrantVerifier`` port over this deployment's keyring and issuer. A grant
    signed by a key the keyring does not hold makes it reload the store's keys (another node
    may have rotated); a key still unknown then is logged by its kid, never with the token."""

    def __init__(self, keyring: Keyring, issuer: str) -> None:
        self.keyring = keyring
        self.issuer = issuer

    def verify(self, token: str, *, now: datetime, expected_subject: str) -> Grant:
        return verify_grant(
            token,
            keyring=self.keyring,
            issuer=self.issuer,
            now=now,
            expected_subject=expected_subject,
        )

    async def learn(self, tokens: Sequence[str]) -> bool:
        learned = False
        for token in tokens:
            kid = _kid_of(token)
            if kid is None or self.keyring.verify_key(kid) is not None:
                continue
            await self.keyring.learn(kid)
            if self.keyring.verify_key(kid) is not None:
                learned = True
            else:
                # The kid is the client's text: bounded, and only ever the header's.
                reason = GrantRejection.UNKNOWN_KEY.value
                log.warning("grant_key_unknown", reason=reason, kid=kid[:64])
        return learned


def _kid_of(token: str) -> str | None:
    """The ``kid`` of a grant's header, not yet trusted; None when there is none."""
    try:
        kid = _unverified_header(token).get("kid")
    except GrantRejected:
        return None
    return kid if isinstance(kid, str) else None


def grant_mismatch(grant: Grant, request: AccessRequest) -> str | None:
    """A grant is the elevation of one subject in one session on one device (CONTRACT §4.3):
    presented from another session or device it proves nothing, even with a valid signature."""
    if grant.subject_id != request.subject.id:
        return "wrong_subject"
    if grant.session_id and request.session.id and grant.session_id != request.session.id:
        return "wrong_session"
    if (
        grant.device_id
        and request.context.device_id
        and grant.device_id != request.context.device_id
    ):
        return "wrong_device"
    return None
