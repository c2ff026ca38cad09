"""Booking-token verification.

Booking tokens are JWTs minted by the prison records system. This server holds
public keys only, so only asymmetric algorithms are accepted, and the algorithm
allow-list is enforced before any key lookup: a token can never make us treat a
public key as an HMAC secret. Refusal codes are stable because users see them.
Identifiers (``sub``, ``visit.id``) are checked here because the server names files,
folders and log fields after them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from prometheus_client import Counter

from auth.jti_memory import JtiMemory
from visit.messages import Refusal

if TYPE_CHECKING:
    from jwt.types import Options

ALGORITHMS = ("EdDSA", "ES256")
VISIT_ROLES = frozenset({"inmate", "family", "attorney"})
STAFF_ROLES = frozenset({"officer", "compliance", "records"})
ROLES = VISIT_ROLES | STAFF_ROLES
REFUSAL_CODES = (
    "expired",
    "not_yet_valid",
    "bad_signature",
    "unknown_key",
    "wrong_audience",
    "wrong_issuer",
    "unsupported_algorithm",
    "malformed",
    "missing_claim",
    "wrong_role",
    "wrong_visit",
    "issued_in_future",
    "lifetime_too_long",
    "bad_id",
    "token_reused",
)
REQUIRED_CLAIMS = ("iss", "aud", "sub", "jti", "iat", "nbf", "exp", "role", "name")
# Far above any real booking token; bounds the work an anonymous caller can cause.
MAX_TOKEN_CHARS = 8192
# What ``sub`` and ``visit.id`` may be: record numbers (V-2026-000187, inmate-5531), UUIDs,
# URNs and e-mail addresses fit; a path separator, "..", spaces and control bytes do not.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
# A shift's staff token (12 h) or a visit plus the hour before it, with room to spare.
DEFAULT_MAX_LIFETIME_S = 24 * 3600

TOKEN_REFUSALS = Counter("visitbridge_token_refusals", "Tokens refused, by code", ["code"])
# PyJWT checks only the signature: its claim checks read the real clock and its
# error types do not map onto our codes, so _check_claims does all of them.
_PYJWT_OPTIONS: Options = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


class TokenError(Refusal):
    """A refused token: ``code`` is one of REFUSAL_CODES, ``message`` never quotes the token."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown token refusal code {code!r}")
        super().__init__(code, message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class VisitClaim:
    id: str
    starts_at: int
    ends_at: int
    privileged: bool = False


@dataclass(frozen=True)
class Claims:
    sub: str
    name: str
    role: str
    jti: str
    iss: str
    iat: int
    nbf: int
    exp: int
    visit: VisitClaim | None


PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class KeyStore(Protocol):
    """Where the verifier finds public keys (auth.keys holds the folder and JWKS stores)."""

    async def get(self, kid: str) -> PublicKey:
        """The public key for ``kid``; raises TokenError("unknown_key") if there is none."""
        ...


def algorithm_for(key: object) -> str | None:
    """The JWT ``alg`` a key signs or verifies with, or None if it is not allowed here."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return "ES256"
    return None


def shown(value: object) -> str:
    """Short repr of an untrusted value, safe to put in a refusal message or log line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class TokenVerifier:
    """Checks booking tokens against the configured issuer, audience and keys."""

    def __init__(self, keys: KeyStore, issuer: str, audience: str, leeway_s: float = 30.0, *,
                 max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
                 jti_memory: JtiMemory | None = None) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._max_lifetime_s = max_lifetime_s
        self._jtis = jti_memory if jti_memory is not None else JtiMemory()

    async def verify(
        self,
        token: str,
        *,
        now: float,
        roles: Collection[str] | None = None,
        visit_id: str | None = None,
    ) -> Claims:
        """Return the token's claims or raise TokenError.

        ``roles`` limits which roles are accepted (default: all). ``visit_id``
        binds visit-role tokens to one visit; staff tokens carry no visit and
        are not bound. An accepted token's jti is remembered with its seat
        (sub and visit) until it expires: another seat's token with that jti is
        refused as ``token_reused``.
        """
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenError(
                "unsupported_algorithm",
                f"Token algorithm {shown(alg)} is not accepted; use EdDSA or ES256.",
            )
        kid = header.get("kid")
        if not kid:
            raise TokenError("unknown_key", "Token header has no key id (kid).")
        key = await self._keys.get(kid)
        if algorithm_for(key) != alg:
            raise TokenError("bad_signature", f"Key {shown(kid)} cannot verify {alg} signatures.")
        payload = _verified_payload(token, key, alg)
        claims = _check_claims(
            payload,
            issuer=self._issuer,
            audience=self._audience,
            leeway_s=self._leeway_s,
            max_lifetime_s=self._max_lifetime_s,
            now=now,
            roles=roles,
            visit_id=visit_id,
        )
        seat = (claims.sub, claims.visit.id if claims.visit else None)
        if not self._jtis.claim(claims.jti, seat, claims.exp + self._leeway_s, now):
            raise TokenError(
                "token_reused", "Token id (jti) was already used by another participant or visit."
            )
        return claims


def _unverified_header(token: object) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenError("malformed", "Token is not a three-part JWT.")
    try:
        # Decoding the payload too means a garbled token is reported as malformed
        # rather than as a key or signature problem.
        jwt.decode(token, options={"verify_signature": False})
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError(
            "malformed", "Token header or payload is not a base64url-encoded JSON object."
        ) from None


def _verified_payload(token: str, key: PublicKey, alg: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, key, algorithms=[alg], options=_PYJWT_OPTIONS)
    except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
        raise TokenError("bad_signature", "Token signature does not verify.") from None
    except jwt.PyJWTError:
        raise TokenError("malformed", "Token could not be decoded.") from None


def _check_claims(
    payload: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    leeway_s: float,
    max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
    now: float,
    roles: Collection[str] | None = None,
    visit_id: str | None = None,
) -> Claims:
    """Validate signature-checked claims against the caller's clock."""
    for claim in REQUIRED_CLAIMS:
        if payload.get(claim) is None:
            raise TokenError("missing_claim", f"Token is missing the {claim!r} claim.")
    iss = payload["iss"]
    if not isinstance(iss, str):
        raise _malformed("iss", "a string")
    jti, name, role = (_text(payload, claim) for claim in ("jti", "name", "role"))
    sub = _id(payload["sub"], "sub")
    aud = payload["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _malformed("aud", "a string or a list of strings")
    iat, nbf, exp = (_seconds(payload, claim) for claim in ("iat", "nbf", "exp"))

    if iss != issuer:
        raise TokenError("wrong_issuer", f"Token issuer is not the configured {issuer!r}.")
    if audience not in audiences:
        raise TokenError("wrong_audience", f"Token audience does not include {audience!r}.")
    if iat > now + leeway_s:
        raise TokenError("issued_in_future", "Token says it was issued in the future (iat).")
    if now > exp + leeway_s:
        raise TokenError("expired", "Token has expired.")
    if now < nbf - leeway_s:
        raise TokenError("not_yet_valid", "Token is not valid yet.")
    # Usable from nbf (or iat, if later) until exp: a link mailed weeks ahead with an nbf
    # near the visit is short-lived; one that opens now and lasts for weeks is not.
    if exp - max(iat, nbf) > max_lifetime_s:
        raise TokenError(
            "lifetime_too_long",
            f"Token is valid for longer than the allowed {max_lifetime_s:.0f} seconds.",
        )
    if role not in ROLES:
        raise TokenError("wrong_role", f"Token role {shown(role)} is not a Visitbridge role.")
    if roles is not None and role not in roles:
        raise TokenError("wrong_role", f"Role {role!r} is not allowed here.")

    visit = None
    if role in VISIT_ROLES:
        visit = _visit(payload.get("visit"))
        if visit_id is not None and visit.id != visit_id:
            raise TokenError("wrong_visit", "Token is for a different visit.")
    return Claims(
        sub=sub, name=name, role=role, jti=jti, iss=iss, iat=iat, nbf=nbf, exp=exp, visit=visit
    )


def _visit(raw: object) -> VisitClaim:
    if raw is None:
        raise TokenError("missing_claim", "Token is missing the 'visit' claim.")
    if not isinstance(raw, dict):
        raise _malformed("visit", "an object")
    for field in ("id", "starts_at", "ends_at"):
        if raw.get(field) is None:
            raise TokenError("missing_claim", f"Token is missing the 'visit.{field}' claim.")
    visit_id = _id(raw["id"], "visit.id")
    starts_at = _seconds(raw, "starts_at", "visit.")
    ends_at = _seconds(raw, "ends_at", "visit.")
    if ends_at <= starts_at:
        raise TokenError("malformed", "Token visit ends before it starts.")
    privileged = raw.get("privileged", False)
    if not isinstance(privileged, bool):
        raise _malformed("visit.privileged", "true or false")
    return VisitClaim(id=visit_id, starts_at=starts_at, ends_at=ends_at, privileged=privileged)


def _id(value: object, claim: str) -> str:
    if not isinstance(value, str):
        raise _malformed(claim, "a string")
    if not ID_PATTERN.fullmatch(value):
        raise TokenError(
            "bad_id",
            f"Token claim {claim!r} must be 1-128 letters, digits and . _ : @ + -,"
            " starting with a letter or digit.",
        )
    return value


def _text(payload: Mapping[str, Any], claim: str) -> str:
    value = payload[claim]
    if not isinstance(value, str) or not value:
        raise _malformed(claim, "a non-empty string")
    return value


def _seconds(payload: Mapping[str, Any], claim: str, prefix: str = "") -> int:
    value = payload[claim]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(prefix + claim, "whole unix seconds")
    return value


def _malformed(claim: str, expected: str) -> TokenError:
    return TokenError("malformed", f"Token claim {claim!r} must be {expected}.")
