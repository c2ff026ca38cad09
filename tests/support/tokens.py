"""Booking tokens for the auth tests: the keys they are signed with, valid claims, and a
check that a refusal leaks no part of the token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from auth.issuer import issue_token
from auth.tokens import TokenError, TokenVerifier, VisitClaim

NOW = 1_750_000_000
ISSUER = "records.example-prison.gov"
AUDIENCE = "visitbridge"
VISIT = VisitClaim(id="v-42", starts_at=NOW + 600, ends_at=NOW + 2400, privileged=False)


@dataclass
class Keys:
    public_dir: Path
    ed: Any  # Ed25519 private key, kid "ed1"
    ec: Any  # P-256 private key, kid "ec1"


def family_token(keys: Keys, **overrides: Any) -> str:
    args: dict[str, Any] = dict(
        kid="ed1", issuer=ISSUER, audience=AUDIENCE, sub="fam-7", role="family",
        name="Sam Family", visit=VISIT, now=NOW,
    )
    args.update(overrides)
    return issue_token(keys.ed, **args)


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid family payload, with overrides; a value of None removes the claim."""
    payload: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "fam-7", "jti": "j1", "iat": NOW,
        "nbf": NOW, "exp": NOW + 3600, "role": "family", "name": "Sam Family",
        "visit": {"id": "v-42", "starts_at": NOW + 600, "ends_at": NOW + 2400},
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def signed(keys: Keys, payload: dict[str, Any], kid: str = "ed1", alg: str = "EdDSA") -> str:
    """Sign any payload, even ones PyJWT's ``jwt.encode`` would refuse to build."""
    key = keys.ed if alg == "EdDSA" else keys.ec
    return jwt.api_jws.encode(json.dumps(payload).encode(), key, algorithm=alg,
                              headers={"kid": kid})


async def refusal(verifier: TokenVerifier, token: str, **kwargs: Any) -> TokenError:
    kwargs.setdefault("now", NOW + 1000)
    with pytest.raises(TokenError) as caught:
        await verifier.verify(token, **kwargs)
    # Messages reach users and logs: no token, nor any part of one, may leak into them.
    parts = token.split(".") if isinstance(token, str) else []
    for text in (caught.value.message, str(caught.value)):
        assert not any(part in text for part in parts if len(part) > 8)
    return caught.value
