"""Reference booking-token issuer: what a prison records system copies.

Visitbridge itself only verifies tokens; this exists for the ``visitbridge
token`` command, for tests, and as a worked example of the contract in
docs/tokens.md.
"""

from __future__ import annotations

import dataclasses
import uuid

import jwt

from auth.keys import PrivateKey
from auth.tokens import ROLES, VISIT_ROLES, VisitClaim, algorithm_for

DEFAULT_STAFF_TTL_S = 12 * 3600
# Visit tokens are valid from this long before the visit starts: more than the server's
# waiting-room lead (early_entry_s, 15 minutes by default), so the server's policy, not
# the token, says when a visitor may come in.
VISIT_TOKEN_LEAD_S = 3600


def issue_token(
    private_key: PrivateKey,
    *,
    kid: str,
    issuer: str,
    audience: str,
    sub: str,
    role: str,
    name: str,
    visit: VisitClaim | None = None,
    now: float,
    ttl_s: float | None = None,
    not_before: float | None = None,
    jti: str | None = None,
) -> str:
    """Sign a booking token; the algorithm follows the key (Ed25519 -> EdDSA, P-256 -> ES256).

    Defaults: visit roles are valid from an hour before the visit (or from issue, if
    later) until it ends; staff roles from now for 12 hours. ``ttl_s``
    overrides the expiry as ``now + ttl_s``, ``not_before`` the start.
    """
    alg = algorithm_for(private_key)
    if alg is None:
        raise ValueError("signing key must be an Ed25519 or P-256 private key")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(sorted(ROLES))}")
    if role in VISIT_ROLES:
        if visit is None:
            raise ValueError(f"role {role!r} needs a visit")
        if visit.ends_at <= visit.starts_at:
            raise ValueError("visit must end after it starts")
        nbf, exp = max(now, visit.starts_at - VISIT_TOKEN_LEAD_S), float(visit.ends_at)
    else:
        if visit is not None:
            raise ValueError(f"staff role {role!r} takes no visit")
        nbf, exp = now, now + DEFAULT_STAFF_TTL_S
    if ttl_s is not None:
        exp = now + ttl_s
    if not_before is not None:
        nbf = not_before
    if exp <= now:
        raise ValueError("token would already be expired")
    payload: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "jti": jti or uuid.uuid4().hex,
        "iat": int(now),
        "nbf": int(nbf),
        "exp": int(exp),
        "role": role,
        "name": name,
    }
    if visit is not None:
        payload["visit"] = dataclasses.asdict(visit)
    return jwt.encode(payload, private_key, algorithm=alg, headers={"kid": kid})
