"""Booking tokens: every refusal code, algorithm confusion, claims, roles and visits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from auth.issuer import issue_token
from auth.keys import PemDirKeyStore, generate_keypair
from auth.tokens import (
    REFUSAL_CODES,
    ROLES,
    STAFF_ROLES,
    VISIT_ROLES,
    TokenError,
    TokenVerifier,
    VisitClaim,
)
from tests.support.tokens import (
    AUDIENCE,
    ISSUER,
    NOW,
    VISIT,
    Keys,
    claims,
    family_token,
    refusal,
    signed,
)


@pytest.fixture
def verifier(keys: Keys) -> TokenVerifier:
    return TokenVerifier(PemDirKeyStore(keys.public_dir), ISSUER, AUDIENCE, leeway_s=30)


def b64(data: bytes | dict[str, Any] | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def crafted(header: dict[str, Any], payload: Any, signature: bytes = b"sig") -> str:
    return f"{b64(header)}.{b64(payload)}.{b64(signature)}"


def hs256_with_public_pem(keys: Keys) -> str:
    """The classic confusion attack: HMAC-sign with the server's public key as the secret."""
    pem = (keys.public_dir / "ed1.pem").read_bytes()
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'ed1'})}.{b64(claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


# One case per refusal code: (code, token builder, verify kwargs).
REFUSALS: list[tuple[str, Callable[[Keys], str], dict[str, Any]]] = [
    ("expired", lambda k: family_token(k), {"now": VISIT.ends_at + 31}),
    ("not_yet_valid", lambda k: family_token(k, not_before=NOW + 500), {"now": NOW + 400}),
    ("bad_signature", lambda k: signed(k, claims(), kid="ec1", alg="ES256")[:-6] + "AAAAAA", {}),
    ("unknown_key", lambda k: signed(k, claims(), kid="nope"), {}),
    ("wrong_audience", lambda k: family_token(k, audience="other-server"), {}),
    ("wrong_issuer", lambda k: family_token(k, issuer="someone-else"), {}),
    ("unsupported_algorithm", hs256_with_public_pem, {}),
    ("malformed", lambda k: family_token(k) + ".extra", {}),
    ("missing_claim", lambda k: signed(k, claims(exp=None)), {}),
    ("wrong_role", lambda k: family_token(k), {"roles": {"officer"}}),
    ("wrong_visit", lambda k: family_token(k), {"visit_id": "v-99"}),
    ("issued_in_future", lambda k: signed(k, claims(iat=NOW + 1031)), {}),
    ("lifetime_too_long", lambda k: family_token(k, ttl_s=2 * 86400), {}),
    ("bad_id", lambda k: family_token(k, sub="../x"), {}),
]


def test_refusal_table_covers_every_code() -> None:
    # token_reused takes two tokens: test_token_ids.py has its cases.
    assert sorted([code for code, _, _ in REFUSALS] + ["token_reused"]) == sorted(REFUSAL_CODES)


@pytest.mark.parametrize(("code", "build", "kwargs"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_each_refusal_code(
    keys: Keys, verifier: TokenVerifier, code: str, build: Callable[[Keys], str],
    kwargs: dict[str, Any],
) -> None:
    assert (await refusal(verifier, build(keys), **kwargs)).code == code


async def test_accepts_eddsa_family_token(keys: Keys, verifier: TokenVerifier) -> None:
    token = family_token(keys, visit=VisitClaim("v-42", NOW + 600, NOW + 2400, privileged=True))
    got = await verifier.verify(token, now=NOW + 700, roles=VISIT_ROLES, visit_id="v-42")
    assert (got.sub, got.name, got.role, got.iss) == ("fam-7", "Sam Family", "family", ISSUER)
    assert (got.iat, got.nbf, got.exp) == (NOW, max(NOW, VISIT.starts_at - 3600), VISIT.ends_at)
    assert got.visit == VisitClaim("v-42", NOW + 600, NOW + 2400, privileged=True)
    assert len(got.jti) == 32


async def test_accepts_es256_officer_token(keys: Keys, verifier: TokenVerifier) -> None:
    token = issue_token(keys.ec, kid="ec1", issuer=ISSUER, audience=AUDIENCE, sub="off-1",
                        role="officer", name="Officer Lee", now=NOW)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    got = await verifier.verify(token, now=NOW + 60, roles=STAFF_ROLES, visit_id="v-42")
    assert (got.role, got.visit) == ("officer", None)  # staff are not bound to a visit


async def test_staff_visit_claim_is_ignored(keys: Keys, verifier: TokenVerifier) -> None:
    token = signed(keys, claims(role="compliance", visit="not even an object"))
    assert (await verifier.verify(token, now=NOW)).visit is None


async def test_privileged_defaults_to_false(keys: Keys, verifier: TokenVerifier) -> None:
    got = await verifier.verify(signed(keys, claims()), now=NOW)
    assert got.visit is not None and got.visit.privileged is False


async def test_audience_may_be_a_list(keys: Keys, verifier: TokenVerifier) -> None:
    await verifier.verify(signed(keys, claims(aud=["other", AUDIENCE])), now=NOW)
    error = await refusal(verifier, signed(keys, claims(aud=["other", "more"])), now=NOW)
    assert error.code == "wrong_audience"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.e30.c2ln",
        f"{b64(b'not json')}.{b64({})}.c2ln",
        f"{b64([1, 2])}.{b64({})}.c2ln",
        f"{b64({'alg': 'EdDSA', 'kid': 'ed1'})}.{b64(b'[1, 2]')}.c2ln",
        f"{b64({'alg': 'EdDSA', 'kid': 'ed1'})}.{b64(b'{oops')}.c2ln",
        f"{b64({'alg': 'EdDSA', 'kid': 7})}.{b64({})}.c2ln",
        "x" * 9000 + ".e30.c2ln",
    ],
)
async def test_malformed_tokens(verifier: TokenVerifier, token: str) -> None:
    assert (await refusal(verifier, token)).code == "malformed"


async def test_non_string_token_is_malformed(verifier: TokenVerifier) -> None:
    assert (await refusal(verifier, None)).code == "malformed"  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "RS256", "ES384", "PS256", "", None])
async def test_unsupported_algorithms_never_reach_the_key_store(
    keys: Keys, alg: str | None
) -> None:
    class SpyStore:
        def __init__(self) -> None:
            self.calls: list[str] = []

        async def get(self, kid: str) -> Any:
            self.calls.append(kid)
            raise AssertionError("key lookup before the algorithm check")

    spy = SpyStore()
    verifier = TokenVerifier(spy, ISSUER, AUDIENCE)
    header = {"kid": "ed1"} if alg is None else {"alg": alg, "kid": "ed1"}
    signature = b"" if alg in ("none", "None") else b"whatever"
    error = await refusal(verifier, crafted(header, claims(), signature))
    assert error.code == "unsupported_algorithm"
    assert spy.calls == []


async def test_hs256_signed_with_public_key_is_refused(
    keys: Keys, verifier: TokenVerifier
) -> None:
    assert (await refusal(verifier, hs256_with_public_pem(keys))).code == "unsupported_algorithm"


async def test_missing_kid_is_unknown_key(keys: Keys, verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), keys.ed, algorithm="EdDSA")
    assert (await refusal(verifier, token)).code == "unknown_key"


async def test_same_kid_other_key_is_bad_signature(keys: Keys, verifier: TokenVerifier) -> None:
    impostor = jwt.encode(claims(), generate_keypair()[0], algorithm="EdDSA",
                          headers={"kid": "ed1"})
    assert (await refusal(verifier, impostor)).code == "bad_signature"


async def test_tampered_payload_is_bad_signature(keys: Keys, verifier: TokenVerifier) -> None:
    header, _, signature = signed(keys, claims()).split(".")
    forged = f"{header}.{b64(claims(role='officer'))}.{signature}"
    assert (await refusal(verifier, forged)).code == "bad_signature"


@pytest.mark.parametrize(("alg", "kid"), [("EdDSA", "ec1"), ("ES256", "ed1")])
async def test_algorithm_key_type_mismatch_is_bad_signature(
    keys: Keys, verifier: TokenVerifier, alg: str, kid: str
) -> None:
    token = signed(keys, claims(), kid=kid, alg=alg)
    assert (await refusal(verifier, token)).code == "bad_signature"


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "jti", "iat", "nbf", "exp", "role", "name"])
async def test_missing_claim_names_the_claim(
    keys: Keys, verifier: TokenVerifier, claim: str
) -> None:
    error = await refusal(verifier, signed(keys, claims(**{claim: None})))
    assert error.code == "missing_claim"
    assert repr(claim) in error.message


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": 5},
        {"sub": 7},
        {"jti": 1},
        {"name": ""},
        {"name": ["Sam"]},
        {"role": 3},
        {"aud": 5},
        {"aud": [AUDIENCE, 5]},
        {"exp": "tomorrow"},
        {"exp": NOW + 3600.5},
        {"nbf": True},
        {"iat": "now"},
    ],
)
async def test_wrong_claim_types_are_malformed(
    keys: Keys, verifier: TokenVerifier, overrides: dict[str, Any]
) -> None:
    assert (await refusal(verifier, signed(keys, claims(**overrides)), now=NOW)).code == "malformed"


async def test_leeway_applies_to_exp_and_nbf(keys: Keys, verifier: TokenVerifier) -> None:
    token = signed(keys, claims(nbf=NOW + 100, exp=NOW + 200))
    await verifier.verify(token, now=NOW + 100 - 30)
    await verifier.verify(token, now=NOW + 200 + 30)
    assert (await refusal(verifier, token, now=NOW + 100 - 30.5)).code == "not_yet_valid"
    assert (await refusal(verifier, token, now=NOW + 200 + 30.5)).code == "expired"


async def test_zero_leeway(keys: Keys) -> None:
    verifier = TokenVerifier(PemDirKeyStore(keys.public_dir), ISSUER, AUDIENCE, leeway_s=0)
    token = signed(keys, claims(exp=NOW + 200))
    await verifier.verify(token, now=NOW + 200)
    assert (await refusal(verifier, token, now=NOW + 201)).code == "expired"


@pytest.mark.parametrize("role", ["warden", "Family", "admin"])
async def test_unknown_role_is_wrong_role(keys: Keys, verifier: TokenVerifier, role: str) -> None:
    assert (await refusal(verifier, signed(keys, claims(role=role)), now=NOW)).code == "wrong_role"


async def test_roles_restrict_accepted_roles(keys: Keys, verifier: TokenVerifier) -> None:
    records = signed(keys, claims(role="records"))
    assert (await verifier.verify(records, now=NOW, roles={"records"})).role == "records"
    assert (await refusal(verifier, records, now=NOW, roles=VISIT_ROLES)).code == "wrong_role"


async def test_visit_role_without_visit(keys: Keys, verifier: TokenVerifier) -> None:
    error = await refusal(verifier, signed(keys, claims(role="attorney", visit=None)), now=NOW)
    assert (error.code, "'visit'" in error.message) == ("missing_claim", True)


@pytest.mark.parametrize("missing", ["id", "starts_at", "ends_at"])
async def test_visit_field_missing(keys: Keys, verifier: TokenVerifier, missing: str) -> None:
    visit = {"id": "v-42", "starts_at": NOW, "ends_at": NOW + 60}
    del visit[missing]
    error = await refusal(verifier, signed(keys, claims(visit=visit)), now=NOW)
    assert (error.code, f"visit.{missing}" in error.message) == ("missing_claim", True)


@pytest.mark.parametrize(
    "visit",
    [
        "v-42",
        ["v-42"],
        {"id": 42, "starts_at": NOW, "ends_at": NOW + 60},
        {"id": "v-42", "starts_at": "noon", "ends_at": NOW + 60},
        {"id": "v-42", "starts_at": NOW, "ends_at": float(NOW + 60)},
        {"id": "v-42", "starts_at": NOW, "ends_at": NOW},
        {"id": "v-42", "starts_at": NOW, "ends_at": NOW - 60},
        {"id": "v-42", "starts_at": NOW, "ends_at": NOW + 60, "privileged": "yes"},
        {"id": "v-42", "starts_at": NOW, "ends_at": NOW + 60, "privileged": None},
    ],
)
async def test_bad_visit_is_malformed(keys: Keys, verifier: TokenVerifier, visit: Any) -> None:
    assert (await refusal(verifier, signed(keys, claims(visit=visit)), now=NOW)).code == "malformed"


async def test_token_for_another_visit(keys: Keys, verifier: TokenVerifier) -> None:
    token = family_token(keys, visit=VisitClaim("v-1", NOW + 600, NOW + 2400))
    assert (await refusal(verifier, token, visit_id="v-2")).code == "wrong_visit"
    assert (await verifier.verify(token, now=NOW + 1000, visit_id="v-1")).visit is not None


def test_token_error_rejects_unknown_codes() -> None:
    with pytest.raises(ValueError):
        TokenError("nope", "x")


def test_role_sets() -> None:
    assert ROLES == VISIT_ROLES | STAFF_ROLES and not VISIT_ROLES & STAFF_ROLES
    assert "records" in STAFF_ROLES and len(REFUSAL_CODES) == 15
