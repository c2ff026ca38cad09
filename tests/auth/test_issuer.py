"""The reference issuer: the claims it fills in and the requests it refuses."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from auth.issuer import issue_token
from auth.tokens import VisitClaim
from tests.support.tokens import AUDIENCE, ISSUER, NOW, VISIT, Keys, family_token


def test_issuer_defaults_for_visit_roles(keys: Keys) -> None:
    # Valid from an hour before the visit, or from issue if that is later.
    near = issue_token(keys.ed, kid="ed1", issuer=ISSUER, audience=AUDIENCE, sub="i-1",
                       role="inmate", name="Alex", visit=VISIT, now=NOW)
    ahead = issue_token(keys.ed, kid="ed1", issuer=ISSUER, audience=AUDIENCE, sub="i-1",
                        role="inmate", name="Alex", visit=VISIT, now=NOW - 86400)
    for token, nbf in ((near, max(NOW, VISIT.starts_at - 3600)),
                       (ahead, VISIT.starts_at - 3600)):
        payload = jwt.decode(token, options={"verify_signature": False})
        assert (payload["nbf"], payload["exp"]) == (nbf, VISIT.ends_at)
        assert payload["visit"] == {"id": "v-42", "starts_at": VISIT.starts_at,
                                    "ends_at": VISIT.ends_at, "privileged": False}
    assert jwt.get_unverified_header(near) == {"alg": "EdDSA", "kid": "ed1", "typ": "JWT"}


def test_issuer_defaults_for_staff_and_overrides(keys: Keys) -> None:
    common: dict[str, Any] = dict(kid="ec1", issuer=ISSUER, audience=AUDIENCE, sub="o-1",
                                  role="officer", name="Lee", now=NOW + 0.9)
    staff = jwt.decode(issue_token(keys.ec, **common), options={"verify_signature": False})
    assert (staff["iat"], staff["nbf"], staff["exp"]) == (NOW, NOW, NOW + 12 * 3600)
    assert "visit" not in staff
    custom = jwt.decode(
        issue_token(keys.ec, **common, ttl_s=60, not_before=NOW - 5, jti="fixed"),
        options={"verify_signature": False},
    )
    assert (custom["nbf"], custom["exp"], custom["jti"]) == (NOW - 5, NOW + 60, "fixed")


@pytest.mark.parametrize(
    "overrides",
    [
        {"role": "warden"},
        {"role": "family", "visit": None},
        {"role": "officer", "visit": VISIT},
        {"visit": VisitClaim("v", NOW + 10, NOW + 10)},
        {"now": VISIT.ends_at},
        {"role": "officer", "visit": None, "ttl_s": 0},
    ],
)
def test_issuer_refuses_bad_requests(keys: Keys, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        family_token(keys, **overrides)


def test_issuer_refuses_unsupported_keys() -> None:
    with pytest.raises(ValueError):
        issue_token(b"secret", kid="k", issuer=ISSUER, audience=AUDIENCE,  # type: ignore[arg-type]
                    sub="s", role="officer", name="n", now=NOW)
