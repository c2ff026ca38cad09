"""The public-key stores tokens are checked against: a folder of PEM files, a JWKS URL;
and writing a key pair."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from auth.keys import JwksKeyStore, PemDirKeyStore, generate_keypair, parse_jwks, write_keypair
from auth.tokens import TokenError, TokenVerifier
from tests.support.clock import FakeClock
from tests.support.tokens import AUDIENCE, ISSUER, NOW, Keys, claims, refusal, signed


@pytest.mark.parametrize("kid", ["../outside", "../public/ed1", "/etc/passwd", "ed1/", "a b", ""])
async def test_pem_store_refuses_path_like_kids(tmp_path: Path, keys: Keys, kid: str) -> None:
    (tmp_path / "outside.pem").write_bytes((keys.public_dir / "ed1.pem").read_bytes())
    with pytest.raises(TokenError) as caught:
        await PemDirKeyStore(keys.public_dir).get(kid)
    assert caught.value.code == "unknown_key"


async def test_pem_store_picks_up_new_kid_without_restart(tmp_path: Path, keys: Keys) -> None:
    clock = FakeClock(1000.0)
    store = PemDirKeyStore(keys.public_dir, clock=clock)
    await store.get("ed1")
    write_keypair("ed2", keys.public_dir, tmp_path / "private" / "ed2.pem")
    with pytest.raises(TokenError):  # folder was read less than a second ago
        await store.get("ed2")
    clock.now += 1
    await store.get("ed2")


async def test_pem_store_forgets_deleted_key(keys: Keys) -> None:
    clock = FakeClock(1000.0)
    store = PemDirKeyStore(keys.public_dir, clock=clock)
    await store.get("ed1")
    (keys.public_dir / "ed1.pem").unlink()
    clock.now += 30
    await store.get("ed1")  # still cached
    clock.now += 30
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
    redirect: bool = False  # answer 302 to /elsewhere.json, which serves the same keys


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()

    async def handler(request: web.Request) -> web.Response:
        server.hits += 1
        if server.redirect and request.path == "/jwks.json":
            raise web.HTTPFound("/elsewhere.json")
        return web.json_response({"keys": server.keys}, status=server.status)

    app = web.Application()
    app.router.add_get("/jwks.json", handler)
    app.router.add_get("/elsewhere.json", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/jwks.json"
    yield server
    await runner.cleanup()


@pytest.fixture
async def jwks_store(jwks_server: JwksServer) -> AsyncIterator[tuple[JwksKeyStore, FakeClock]]:
    clock = FakeClock(1000.0)
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
    clock.now += 5
    assert (await refusal(verifier, new_token, now=NOW)).code == "unknown_key"
    assert jwks_server.hits == 1  # too soon after the last fetch
    clock.now += 5
    assert (await verifier.verify(new_token, now=NOW)).sub == "fam-7"
    assert jwks_server.hits == 2
    for _ in range(3):  # random kids cannot make us hammer the records system
        await refusal(verifier, signed(keys, claims(), kid="random"), now=NOW)
    assert jwks_server.hits == 2
    clock.now += 10
    await refusal(verifier, signed(keys, claims(), kid="random"), now=NOW)
    assert jwks_server.hits == 3


async def test_jwks_ttl_expiry_refetches_and_revokes(
    jwks_server: JwksServer, ed1_fetched: tuple[JwksKeyStore, FakeClock]
) -> None:
    store, clock = ed1_fetched
    jwks_server.keys = []
    clock.now += 299
    await store.get("ed1")
    clock.now += 1
    with pytest.raises(TokenError) as caught:
        await store.get("ed1")
    assert caught.value.code == "unknown_key" and jwks_server.hits == 2


async def test_jwks_outage_keeps_previous_keys(
    jwks_server: JwksServer, ed1_fetched: tuple[JwksKeyStore, FakeClock]
) -> None:
    store, clock = ed1_fetched
    jwks_server.status = 500
    clock.now += 301
    await store.get("ed1")
    assert jwks_server.hits == 2


async def test_jwks_failing_from_start_is_unknown_key(
    jwks_server: JwksServer, jwks_store: tuple[JwksKeyStore, FakeClock]
) -> None:
    jwks_server.status = 503
    with pytest.raises(TokenError) as caught:
        await jwks_store[0].get("ed1")
    assert caught.value.code == "unknown_key" and jwks_server.hits == 1


async def test_jwks_redirects_are_not_followed(
    keys: Keys, jwks_server: JwksServer, jwks_store: tuple[JwksKeyStore, FakeClock]
) -> None:
    # A redirect could lead from https to plain http: the JWKS URL must answer itself.
    jwks_server.keys, jwks_server.redirect = [jwk(keys.ed, "ed1")], True
    with pytest.raises(TokenError) as caught:
        await jwks_store[0].get("ed1")
    assert caught.value.code == "unknown_key" and jwks_server.hits == 1


@pytest.mark.parametrize("url", ["http://records.example/jwks.json", "file:///etc/jwks"])
def test_jwks_store_refuses_a_url_open_to_tampering(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        JwksKeyStore(url)


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
