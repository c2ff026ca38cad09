"""Public-key stores for token verification, and key generation for issuers.

The server only holds public keys: a folder of ``<kid>.pem`` files or a JWKS
URL. Both re-read their source when a token names an unknown kid, so a records
system rotates keys by publishing a new kid, without restarting Visitbridge;
both rate-limit that re-read so random kids cannot hammer the disk or the URL.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from prometheus_client import Gauge

from auth.tokens import ALGORITHMS, KeyStore, PublicKey, TokenError, algorithm_for, shown

log = logging.getLogger(__name__)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
KID_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
DEV_KID = "dev"  # the development key of ``serve --demo``
DEVELOPMENT_KEY_TRUSTED = Gauge(
    "visitbridge_development_key_trusted",
    "1 while a development token key is trusted: whoever holds it can sign any token")


def _unknown(kid: str) -> TokenError:
    return TokenError("unknown_key", f"No public key is configured for key id {shown(kid)}.")


class PemDirKeyStore:
    """Public keys from ``<directory>/<kid>.pem`` (SubjectPublicKeyInfo PEM).

    The folder is re-read on an unknown kid (at most once per MISS_RESCAN_S)
    and whenever the cache is older than MAX_AGE_S, so deleting a file revokes
    its key within a minute.
    """

    MISS_RESCAN_S = 1.0
    MAX_AGE_S = 60.0

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._directory = Path(directory)
        self._clock = clock
        self._keys: dict[str, PublicKey] = {}
        self._scanned_at = -math.inf

    async def get(self, kid: str) -> PublicKey:
        # The kid never becomes a path, but refusing odd names early keeps it that way.
        if not KID_PATTERN.fullmatch(kid):
            raise _unknown(kid)
        now = self._clock()
        age = now - self._scanned_at
        if age >= self.MAX_AGE_S or (kid not in self._keys and age >= self.MISS_RESCAN_S):
            self._keys = self._scan()
            self._scanned_at = now
        try:
            return self._keys[kid]
        except KeyError:
            raise _unknown(kid) from None

    def _scan(self) -> dict[str, PublicKey]:
        if not self._directory.is_dir():
            log.warning("token key folder %s does not exist", self._directory)
            return {}
        keys: dict[str, PublicKey] = {}
        for path in self._directory.glob("*.pem"):
            kid = path.name.removesuffix(".pem")
            if not KID_PATTERN.fullmatch(kid):
                continue
            try:
                key = serialization.load_pem_public_key(path.read_bytes())
            except (OSError, ValueError, UnsupportedAlgorithm) as exc:
                log.warning("skipping token key %s: %s", path, exc)
                continue
            if algorithm_for(key) is None:
                log.warning("skipping token key %s: not an Ed25519 or P-256 public key", path)
                continue
            keys[kid] = cast(PublicKey, key)
        return keys


def jwks_url_problem(url: str) -> str | None:
    """Why ``url`` may not serve token keys, or None.

    Whoever can change the JWKS in transit can mint any token, so it must come over
    https; plain http is allowed only to a loopback address (tests, a records system
    on the same host), where nobody sits in between.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme != "http" or not parts.hostname:
        return f"{url!r} is not an https:// URL"
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return None if loopback else f"{url!r} must use https:// (http only to a loopback address)"


class JwksKeyStore:
    """Public keys from a JWKS URL, cached for ``ttl_s``.

    Refetched when stale or on an unknown kid, never more than once per
    MIN_REFETCH_S. If a fetch fails the previous keys stay in use, so an outage
    of the records system does not end visits already booked.
    """

    MIN_REFETCH_S = 10.0
    TIMEOUT_S = 5.0

    def __init__(
        self, url: str, *, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if problem := jwks_url_problem(url):
            raise ValueError(f"JWKS URL {problem}")
        self._url = url
        self._ttl_s = ttl_s
        self._clock = clock
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def get(self, kid: str) -> PublicKey:
        if self._should_fetch(kid):
            async with self._lock:
                if self._should_fetch(kid):  # another task may have just fetched
                    await self._fetch()
        try:
            return self._keys[kid]
        except KeyError:
            raise _unknown(kid) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _should_fetch(self, kid: str) -> bool:
        now = self._clock()
        if now - self._attempted_at < self.MIN_REFETCH_S:
            return False
        return kid not in self._keys or now - self._fetched_at >= self._ttl_s

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            # No redirects: one could lead to plain http.
            async with self._session.get(self._url, allow_redirects=False) as response:
                if response.status != 200:
                    raise aiohttp.ClientError(f"HTTP status {response.status}")
                document = await response.json(content_type=None)
            keys = parse_jwks(document)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("could not fetch token keys from %s: %s", self._url, exc)
            return
        self._keys = keys
        self._fetched_at = self._attempted_at


class ChainedKeyStore:
    """Stores asked in order: the first that knows the kid answers (the production keys
    before the development key, so a development kid can never shadow a real one)."""

    def __init__(self, *stores: KeyStore) -> None:
        self._stores = stores

    async def get(self, kid: str) -> PublicKey:
        for store in self._stores[:-1]:
            try:
                return await store.get(kid)
            except TokenError as exc:
                if exc.code != "unknown_key":
                    raise
        return await self._stores[-1].get(kid)

    async def close(self) -> None:
        for store in self._stores:
            close = getattr(store, "close", None)
            if close is not None:
                await close()


def development_keys(keys_dir: Path, demo_public_dir: Path) -> list[Path]:
    """The files of a production keys folder that hold a development key.

    That is ``dev.pem`` (where ``serve --demo`` used to write its key) or a copy of a
    key in the development folder. Whoever holds a development private key (it sits
    unprotected beside the data) can sign any token, so an operator must hear of it.
    """
    if not keys_dir.is_dir():
        return []
    demo = ({p.read_bytes().strip() for p in demo_public_dir.glob("*.pem")}
            if demo_public_dir.is_dir() else set())
    return sorted(p for p in keys_dir.glob("*.pem")
                  if p.name == f"{DEV_KID}.pem" or p.read_bytes().strip() in demo)


def parse_jwks(document: object) -> dict[str, PublicKey]:
    """Usable signing keys by kid; other entries are skipped so one odd key cannot
    take the whole set down. Raises ValueError if this is not a JWKS at all."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no 'keys' list")
    keys: dict[str, PublicKey] = {}
    for entry in document["keys"]:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(kid, str) or not kid:
            log.warning("skipping JWKS entry without a kid")
        elif "d" in entry:
            log.error("skipping JWKS key %s: it contains PRIVATE key material", shown(kid))
        elif entry.get("use", "sig") == "sig" and entry.get("alg") in (None, *ALGORITHMS):
            key = _jwk_public_key(entry)
            if key is None:
                log.warning("skipping JWKS key %s: not an Ed25519 or P-256 key", shown(kid))
            else:
                keys[kid] = key
    return keys


def _jwk_public_key(entry: dict[str, Any]) -> PublicKey | None:
    try:
        key = jwt.PyJWK(entry).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    return cast(PublicKey, key) if algorithm_for(key) is not None else None


def generate_keypair(alg: str = "EdDSA") -> tuple[bytes, bytes]:
    """A new signing key: (private PKCS8 PEM, public SubjectPublicKeyInfo PEM)."""
    private: PrivateKey
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_keypair(kid: str, public_dir: Path, private_path: Path, alg: str = "EdDSA") -> None:
    """Write ``<public_dir>/<kid>.pem`` and a mode-0600 private key.

    Never overwrites either file: replacing the key behind an existing kid would
    silently invalidate every token already issued with it.
    """
    if not KID_PATTERN.fullmatch(kid):
        raise ValueError(f"key id {kid!r} must match {KID_PATTERN.pattern}")
    public_dir, private_path = Path(public_dir), Path(private_path)
    public_path = public_dir / f"{kid}.pem"
    if public_path.exists():
        raise FileExistsError(errno.EEXIST, "public key already exists", str(public_path))
    private_pem, public_pem = generate_keypair(alg)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_dir.mkdir(parents=True, exist_ok=True)
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), mode)  # exact mode whatever the umask
        file.write(data)


def load_private_key(path: Path) -> PrivateKey:
    """An unencrypted Ed25519 or P-256 private key from a PEM file."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if algorithm_for(key) is None:
        raise ValueError(f"{path} is not an Ed25519 or P-256 private key")
    return cast(PrivateKey, key)
