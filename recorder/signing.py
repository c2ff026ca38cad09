"""The server's own Ed25519 recording key, which signs every manifest entry.

A prison has to be able to show, years later and without trusting the server, that a
recording is the one that was made. Hashes alone only show that files match a list;
the signature shows that the list came from this server's key. The key is created once
and never replaced: a new key would not verify the manifests signed with the old one,
so ``load_or_create`` refuses to overwrite anything and refuses a public file that does
not belong to the private key beside it.

What is signed is the ASCII text of an entry's SHA-256 hex digest (64 bytes), not the raw
digest, so that an auditor can check a signature by hand with ``printf %s <hash>`` and
``openssl pkeyutl -verify -rawin`` (see recorder/export.py, VERIFYING.txt).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

log = logging.getLogger(__name__)

SIGNATURE_BYTES = 64


def key_id_of(public_key: ed25519.Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex characters of the SHA-256
    of its 32 raw bytes. Written into every manifest line so that a reader sees at once
    which key to verify with (and notices if a restart came up with another key)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(public_pem: bytes) -> ed25519.Ed25519PublicKey:
    """The Ed25519 key in a SubjectPublicKeyInfo PEM; ValueError for anything else, so a
    wrong key file is reported as such instead of as "every signature is bad"."""
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("the recording public key must be an Ed25519 key")
    return key


def public_pem_of(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_signature(public_key: ed25519.Ed25519PublicKey, data: bytes, sig_b64: str) -> bool:
    """True only for a well-formed base64 signature that is valid for ``data``."""
    if not isinstance(sig_b64, str):
        return False
    try:
        signature = base64.b64decode(sig_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def verify_with(public_pem: bytes, data: bytes, sig_b64: str) -> bool:
    """Check one signature against a PEM public key.

    Returns False for a bad or malformed signature; raises ValueError if ``public_pem``
    is not an Ed25519 public key (a configuration mistake, not evidence of tampering).
    """
    return verify_signature(load_public_key(public_pem), data, sig_b64)


@dataclass(frozen=True)
class RecordingKey:
    """The private recording key; only the recorder process should hold one."""

    private_key: ed25519.Ed25519PrivateKey

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_pem(self) -> bytes:
        return public_pem_of(self.public_key)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    def sign(self, data: bytes) -> str:
        """The base64 (standard alphabet, padded) Ed25519 signature of ``data``."""
        return base64.b64encode(self.private_key.sign(data)).decode("ascii")

    @classmethod
    def generate(cls) -> RecordingKey:
        """A fresh in-memory key (tests, and ``load_or_create`` on first run)."""
        return cls(ed25519.Ed25519PrivateKey.generate())


def load_or_create(private_path: Path, public_path: Path) -> RecordingKey:
    """The recording key from ``private_path``, created (mode 0600) on first run.

    Never overwrites: an existing private key is loaded as is; a missing public file is
    (re)written from it; an existing public file must match it, else ValueError. A public
    file without its private key is refused too, because a new private key would silently
    orphan every manifest verified against that public file.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    if not private_path.exists():
        if public_path.exists():
            raise ValueError(
                f"{public_path} exists but its private key {private_path} does not; "
                "refusing to create a new recording key that would not match it"
            )
        key = RecordingKey.generate()
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        private_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_new(private_path, pem, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs, below
        else:
            log.info("created recording key %s at %s", key.key_id, private_path)
    key = _load_private(private_path)
    if public_path.exists():
        try:
            existing = load_public_key(public_path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{public_path}: {exc}") from None
        if key_id_of(existing) != key.key_id:
            raise ValueError(
                f"{public_path} (key id {key_id_of(existing)}) does not belong to the "
                f"recording key {private_path} (key id {key.key_id})"
            )
    else:
        public_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_new(public_path, key.public_pem, 0o644)
        except FileExistsError:
            return load_or_create(private_path, public_path)  # raced: check theirs
    return key


def load_existing(private_path: Path, public_path: Path) -> RecordingKey:
    """The recording key as ``load_or_create`` checks it, but never a new one: a tool that
    signs on behalf of the server (an export) must use the server's key or none."""
    if not Path(private_path).is_file():
        raise FileNotFoundError(f"no recording key at {private_path}")
    return load_or_create(private_path, public_path)


def _load_private(path: Path) -> RecordingKey:
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning("recording key %s is readable by other users (mode %o)", path, mode & 0o777)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: the recording key must be an Ed25519 key")
    return RecordingKey(private)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with exactly ``mode``, durably (file and directory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), mode)  # exact mode whatever the umask
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable too (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
