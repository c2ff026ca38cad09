"""Booking tokens: every refusal code, algorithm confusion, key stores, the reference issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from auth.issuer import issue_token
from auth.keys import (
    JwksKeyStore,
    PemDirKeyStore,
    generate_keypair,
    load_private_key,
    parse_jwks,
    write_keypair,
)
from auth.tokens import (
    REFUSAL_CODES,
    ROLES,
    STAFF_ROLES,
    VISIT_ROLES,
    TokenError,
    TokenVerifier,
    VisitClaim,
)

NOW = 1_750_000_000
ISSUER = "records.example-prison.gov"
AUDIENCE = "visitbridge"
VISIT = VisitClaim(id="v-42", starts_at=NOW + 600, ends_at=NOW + 2400, privileged=False)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Keys:
    public_dir: Path
    ed: Any  # Ed25519 private key, kid "ed1"
    ec: Any  # P-256 private key, kid "ec1"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    public_dir = tmp_path / "public"
    write_keypair("ed1", public_dir, tmp_path / "private" / "ed1.pem")
    write_keypair("ec1", public_dir, tmp_path / "private" / "ec1.pem", alg="ES256")
    return Keys(
        public_dir,
        load_private_key(tmp_path / "private" / "ed1.pem"),
        load_private_key(tmp_path / "private" / "ec1.pem"),
    )


@pytest.fixture
def verifier(keys: Keys) -> TokenVerifier:
    return TokenVerifier(PemDirKeyStore(keys.public_dir), ISSUER, AUDIENCE, leeway_s=30)


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


async def refusal(verifier: TokenVerifier, token: str, **kwargs: Any) -> TokenError:
    kwargs.setdefault("now", NOW + 1000)
    with pytest.raises(TokenError) as caught:
        await verifier.verify(token, **kwargs)
    # Messages reach users and logs: no token, nor any part of one, may leak into them.
    parts = token.split(".") if isinstance(token, str) else []
    for text in (caught.value.message, str(caught.value)):
        assert not any(part in text for part in parts if len(part) > 8)
    return caught.value


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
]


def test_refusal_table_covers_every_code() -> None:
    assert sorted(code for code, _, _ in REFUSALS) == sorted(REFUSAL_CODES)


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
        {"sub": ""},
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
        {"id": "", "starts_at": NOW, "ends_at": NOW + 60},
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
    assert "records" in STAFF_ROLES and len(REFUSAL_CODES) == 11


# Key stores


@pytest.mark.parametrize("kid", ["../outside", "../public/ed1", "/etc/passwd", "ed1/", "a b", ""])
async def test_pem_store_refuses_path_like_kids(tmp_path: Path, keys: Keys, kid: str) -> None:
    (tmp_path / "outside.pem").write_bytes((keys.public_dir / "ed1.pem").read_bytes())
    with pytest.raises(TokenError) as caught:
        await PemDirKeyStore(keys.public_dir).get(kid)
    assert caught.value.code == "unknown_key"


async def test_pem_store_picks_up_new_kid_without_restart(tmp_path: Path, keys: Keys) -> None:
    clock = FakeClock()
    store = PemDirKeyStore(keys.public_dir, clock=clock)
    await store.get("ed1")
    write_keypair("ed2", keys.public_dir, tmp_path / "private" / "ed2.pem")
    with pytest.raises(TokenError):  # folder was read less than a second ago
        await store.get("ed2")
    clock.t += 1
    await store.get("ed2")


async def test_pem_store_forgets_deleted_key(keys: Keys) -> None:
    clock = FakeClock()
    store = PemDirKeyStore(keys.public_dir, clock=clock)
    await store.get("ed1")
    (keys.public_dir / "ed1.pem").unlink()
    clock.t += 30
    await store.get("ed1")  # still cached
    clock.t += 30
    with pytest.raises(TokenError):
        await store.get("ed1")


async def test_pem_store_skips_unusable_files(keys: Keys) -> None:
    (keys.public_dir / "junk.pem").write_text("not a key")
    private_pem, _ = generate_keypair()
    (keys.public_dir / "leaked.pem").write_bytes(private_pem)  # a private key is not SPKI
    store = PemDirKeyStore(keys.public_dir)
    await store.get("ec1")
    for kid in ("junk", "leaked"):
        with pytest.raises(TokenError):
            await store.get(kid)


async def test_pem_store_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(TokenError) as caught:
        await PemDirKeyStore(tmp_path / "nowhere").get("ed1")
    assert caught.value.code == "unknown_key"


def test_private_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    private = tmp_path / "secret" / "k.pem"
    write_keypair("k", tmp_path / "pub", private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    before = private.read_bytes()
    with pytest.raises(FileExistsError):
        write_keypair("k2", tmp_path / "pub", private)
    with pytest.raises(FileExistsError):  # same kid, even with a fresh private path
        write_keypair("k", tmp_path / "pub", tmp_path / "other.pem")
    assert private.read_bytes() == before
    assert not (tmp_path / "pub" / "k2.pem").exists()
    assert not (tmp_path / "other.pem").exists()


def test_key_generation_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_keypair("HS256")
    with pytest.raises(ValueError):
        write_keypair("../k", tmp_path, tmp_path / "k.pem")
    private_pem, public_pem = generate_keypair("ES256")
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


# JWKS


def jwk(private_key: Any, kid: str) -> dict[str, Any]:
    public = private_key.public_key()
    algorithm = OKPAlgorithm if isinstance(public, Ed25519PublicKey) else ECAlgorithm
    return {**algorithm.to_jwk(public, as_dict=True), "kid": kid}


@dataclass
class JwksServer:
    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    hits: int = 0


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()

    async def handler(request: web.Request) -> web.Response:
        server.hits += 1
        return web.json_response({"keys": server.keys}, status=server.status)

    app = web.Application()
    app.router.add_get("/jwks.json", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/jwks.json"
    yield server
    await runner.cleanup()


@pytest.fixture
async def jwks_store(jwks_server: JwksServer) -> AsyncIterator[tuple[JwksKeyStore, FakeClock]]:
    clock = FakeClock()
    store = JwksKeyStore(jwks_server.url, ttl_s=300, clock=clock)
    yield store, clock
    await store.close()


@pytest.fixture
async def ed1_fetched(keys: Keys, jwks_server: JwksServer,
                      jwks_store: tuple[JwksKeyStore, FakeClock]
                      ) -> tuple[JwksKeyStore, FakeClock]:
    """The store once it has fetched the JWKS holding key ed1 (one hit on the server)."""
    store, _ = jwks_store
    jwks_server.keys = [jwk(keys.ed, "ed1")]
    await store.get("ed1")
    return jwks_store


async def test_jwks_accepts_eddsa_and_es256(
    keys: Keys, jwks_server: JwksServer, jwks_store: tuple[JwksKeyStore, FakeClock]
) -> None:
    jwks_server.keys = [jwk(keys.ed, "ed1"), jwk(keys.ec, "ec1")]
    verifier = TokenVerifier(jwks_store[0], ISSUER, AUDIENCE)
    await verifier.verify(signed(keys, claims()), now=NOW)
    await verifier.verify(signed(keys, claims(), kid="ec1", alg="ES256"), now=NOW)
    assert jwks_server.hits == 1


async def test_jwks_rotation_refetches_on_unknown_kid_rate_limited(
    tmp_path: Path, keys: Keys, jwks_server: JwksServer,
    jwks_store: tuple[JwksKeyStore, FakeClock],
) -> None:
    store, clock = jwks_store
    jwks_server.keys = [jwk(keys.ed, "ed1")]
    verifier = TokenVerifier(store, ISSUER, AUDIENCE)
    await verifier.verify(signed(keys, claims()), now=NOW)
    new_token = signed(keys, claims(), kid="ec-2025", alg="ES256")
    jwks_server.keys.append(jwk(keys.ec, "ec-2025"))
    clock.t += 5
    assert (await refusal(verifier, new_token, now=NOW)).code == "unknown_key"
    assert jwks_server.hits == 1  # too soon after the last fetch
    clock.t += 5
    assert (await verifier.verify(new_token, now=NOW)).sub == "fam-7"
    assert jwks_server.hits == 2
    for _ in range(3):  # random kids cannot make us hammer the records system
        await refusal(verifier, signed(keys, claims(), kid="random"), now=NOW)
    assert jwks_server.hits == 2
    clock.t += 10
    await refusal(verifier, signed(keys, claims(), kid="random"), now=NOW)
    assert jwks_server.hits == 3


async def test_jwks_ttl_expiry_refetches_and_revokes(
    jwks_server: JwksServer, ed1_fetched: tuple[JwksKeyStore, FakeClock]
) -> None:
    store, clock = ed1_fetched
    jwks_server.keys = []
    clock.t += 299
    await store.get("ed1")
    clock.t += 1
    with pytest.raises(TokenError) as caught:
        await store.get("ed1")
    assert caught.value.code == "unknown_key" and jwks_server.hits == 2


async def test_jwks_outage_keeps_previous_keys(
    jwks_server: JwksServer, ed1_fetched: tuple[JwksKeyStore, FakeClock]
) -> None:
    store, clock = ed1_fetched
    jwks_server.status = 500
    clock.t += 301
    await store.get("ed1")
    assert jwks_server.hits == 2


async def test_jwks_failing_from_start_is_unknown_key(
    jwks_server: JwksServer, jwks_store: tuple[JwksKeyStore, FakeClock]
) -> None:
    jwks_server.status = 503
    with pytest.raises(TokenError) as caught:
        await jwks_store[0].get("ed1")
    assert caught.value.code == "unknown_key" and jwks_server.hits == 1


def test_parse_jwks_keeps_only_usable_signing_keys(keys: Keys) -> None:
    ed, ec = jwk(keys.ed, "ed1"), jwk(keys.ec, "ec1")
    document = {
        "keys": [
            ed,
            {**ec, "alg": "ES256", "use": "sig"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**ec, "kid": "enc", "use": "enc"},
            {**ec, "kid": "wrong-alg", "alg": "EdDSA"},
            {**ed, "kid": "private", "d": "AAAA"},
            {**ed, "kid": "broken", "x": "%%%"},
            {"kty": "EC", "crv": "P-256"},
            "junk",
        ]
    }
    assert sorted(parse_jwks(document)) == ["ec1", "ed1"]
    with pytest.raises(ValueError):
        parse_jwks({"nokeys": []})


# Reference issuer


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
