"""Booking-token verification.

Booking tokens are JWTs minted by the prison records system. This server holds
public keys only, so only asymmetric algorithms are accepted, and the algorithm
allow-list is enforced before any key lookup: a token can never make us treat a
public key as an HMAC secret. Refusal codes are stable because users see them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from prometheus_client import Counter

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
)
REQUIRED_CLAIMS = ("iss", "aud", "sub", "jti", "iat", "nbf", "exp", "role", "name")
# Far above any real booking token; bounds the work an anonymous caller can cause.
MAX_TOKEN_CHARS = 8192

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

    def __init__(self, keys: KeyStore, issuer: str, audience: str, leeway_s: float = 30.0) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s

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
        are not bound.
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
        return _check_claims(
            payload,
            issuer=self._issuer,
            audience=self._audience,
            leeway_s=self._leeway_s,
            now=now,
            roles=roles,
            visit_id=visit_id,
        )


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
    sub, jti, name, role = (_text(payload, claim) for claim in ("sub", "jti", "name", "role"))
    aud = payload["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _malformed("aud", "a string or a list of strings")
    iat, nbf, exp = (_seconds(payload, claim) for claim in ("iat", "nbf", "exp"))

    if iss != issuer:
        raise TokenError("wrong_issuer", f"Token issuer is not the configured {issuer!r}.")
    if audience not in audiences:
        raise TokenError("wrong_audience", f"Token audience does not include {audience!r}.")
    if now > exp + leeway_s:
        raise TokenError("expired", "Token has expired.")
    if now < nbf - leeway_s:
        raise TokenError("not_yet_valid", "Token is not valid yet.")
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
    visit_id = raw["id"]
    if not isinstance(visit_id, str) or not visit_id:
        raise _malformed("visit.id", "a non-empty string")
    starts_at = _seconds(raw, "starts_at", "visit.")
    ends_at = _seconds(raw, "ends_at", "visit.")
    if ends_at <= starts_at:
        raise TokenError("malformed", "Token visit ends before it starts.")
    privileged = raw.get("privileged", False)
    if not isinstance(privileged, bool):
        raise _malformed("visit.privileged", "true or false")
    return VisitClaim(id=visit_id, starts_at=starts_at, ends_at=ends_at, privileged=privileged)


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
