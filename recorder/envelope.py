"""The encrypted file format of recordings at rest, and the wrapping of its data keys.

Pure: bytes in, bytes out, no files. ``recorder/encrypted.py`` puts it on files.

A file is a header and a sequence of chunks, each sealed with AES-256-GCM under the
file's own random 256-bit data key::

    header = MAGIC (8 bytes) || file id (16 random bytes)
    chunk  = length (4 bytes, big endian, of what follows the nonce)
             || nonce (12 random bytes) || ciphertext || tag (16 bytes)

Each chunk's associated data is the header, the chunk's index (8 bytes) and a final flag
(1 byte), as in age's STREAM and Tink's streaming AEAD: a chunk moved to another index,
into another file, or a file cut short at a chunk boundary (no chunk flagged final at the
end) or extended after its final chunk fails to decrypt. Nonces are random rather than
counters so that a writer may re-seal a chunk it already wrote (a muxer seeking back to
patch a header) without ever reusing a nonce under the key. Chunks vary in length: the
recorder writes one at each flush, so a killed process loses only the chunk being
written.

The data key never sits in the file: it is wrapped (AES-256-GCM again) by a key-
encryption key, with the file id and that key's id as associated data, and kept apart
from the media (``recorder/keystore.py``). So rotating the key-encryption key re-wraps
32-byte keys without touching the media, whose hashes are signed in the manifest, and
deleting the wrapped keys makes every copy of the media unreadable (crypto-shredding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"VBENC01\n"
FILE_ID_BYTES = 16
HEADER_BYTES = len(MAGIC) + FILE_ID_BYTES
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
LENGTH_BYTES = 4
CHUNK_OVERHEAD = LENGTH_BYTES + NONCE_BYTES + TAG_BYTES
MAX_CHUNK = 1 << 18  # plaintext bytes per chunk; a reader refuses anything longer
_WRAP_CONTEXT = b"visitbridge recording data key\0"


class EnvelopeError(Exception):
    """An encrypted file or wrapped key is damaged, altered, truncated or not ours."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def new_header() -> bytes:
    return MAGIC + os.urandom(FILE_ID_BYTES)


def is_encrypted(head: bytes) -> bool:
    """Whether a file starting with ``head`` is in this format."""
    return head.startswith(MAGIC)


def file_id(header: bytes) -> str:
    """The file id (hex) of a header; EnvelopeError if it is not one."""
    if len(header) < HEADER_BYTES or not is_encrypted(header):
        raise EnvelopeError("not an encrypted recording file")
    return header[len(MAGIC):HEADER_BYTES].hex()


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def seal_chunk(key: AESGCM, header: bytes, index: int, final: bool, plaintext: bytes) -> bytes:
    """One chunk as stored: length, nonce, ciphertext and tag. ``key`` is the file's data
    key as an ``AESGCM`` (made once per file: making one costs as much as a chunk)."""
    if len(plaintext) > MAX_CHUNK:
        raise ValueError(f"a chunk holds at most {MAX_CHUNK} bytes")
    nonce = os.urandom(NONCE_BYTES)
    sealed = key.encrypt(nonce, plaintext, _aad(header, index, final))
    return struct.pack(">I", len(sealed)) + nonce + sealed


def chunk_length(prefix: bytes) -> int:
    """Bytes after the nonce of a chunk whose first 4 bytes are ``prefix``."""
    (length,) = struct.unpack(">I", prefix)
    if not TAG_BYTES <= length <= MAX_CHUNK + TAG_BYTES:
        raise EnvelopeError(f"a chunk claims {length} bytes: the file is damaged")
    return length


def open_chunk(key: AESGCM, header: bytes, index: int, final: bool, body: bytes) -> bytes:
    """The plaintext of a stored chunk without its 4-byte length (nonce, ciphertext,
    tag); EnvelopeError if it is not chunk ``index`` of this file with this final flag
    under this key."""
    nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
    try:
        return key.decrypt(nonce, sealed, _aad(header, index, final))
    except InvalidTag:
        where = "final chunk" if final else "chunk"
        raise EnvelopeError(f"{where} {index} fails authentication: altered, reordered, "
                            "truncated, or another key") from None


def encrypt(key: bytes, plaintext: bytes, header: bytes | None = None,
            chunk: int = MAX_CHUNK) -> bytes:
    """A whole file at once (tests, small files)."""
    header, aead = header or new_header(), AESGCM(key)
    pieces = [plaintext[i:i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    return header + b"".join(seal_chunk(aead, header, i, i == len(pieces) - 1, piece)
                             for i, piece in enumerate(pieces))


@dataclass(frozen=True, slots=True)
class Chunk:
    offset: int  # of its length prefix in the file
    length: int  # bytes after the nonce
    start: int  # of its plaintext in the decrypted file

    @property
    def plain(self) -> int:
        return self.length - TAG_BYTES

    @property
    def end(self) -> int:  # of the chunk in the file
        return self.offset + LENGTH_BYTES + NONCE_BYTES + self.length


def decrypt(key: bytes, data: bytes) -> bytes:
    """A whole file at once; EnvelopeError for any damage, including truncation."""
    header, aead = data[:HEADER_BYTES], AESGCM(key)
    file_id(header)
    out, offset, index = [], HEADER_BYTES, 0
    while offset < len(data):
        if offset + LENGTH_BYTES > len(data):
            raise EnvelopeError("the file ends inside a chunk: truncated")
        length = chunk_length(data[offset:offset + LENGTH_BYTES])
        end = offset + LENGTH_BYTES + NONCE_BYTES + length
        if end > len(data):
            raise EnvelopeError("the file ends inside a chunk: truncated")
        out.append(open_chunk(aead, header, index, end == len(data),
                              data[offset + LENGTH_BYTES:end]))
        offset, index = end, index + 1
    if index == 0:
        raise EnvelopeError("the file has no chunks: truncated")
    return b"".join(out)


# -- key wrapping ----------------------------------------------------------------------

def kek_id(kek: bytes) -> str:
    """A key-encryption key's public name: 16 hex characters of an HMAC under it (not a
    plain hash, so the id says nothing about the key to anyone without it)."""
    return hmac.new(kek, b"visitbridge key id", hashlib.sha256).hexdigest()[:16]


def wrap(kek: bytes, file: str, data_key: bytes) -> dict[str, str]:
    """The wrapped record of one file's data key: bound to that file id and that KEK."""
    kid = kek_id(kek)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(kek).encrypt(nonce, data_key, _WRAP_CONTEXT + file.encode() + kid.encode())
    return {"file": file, "kek": kid,
            "wrapped": base64.b64encode(nonce + sealed).decode("ascii")}


def unwrap(kek: bytes, record: dict[str, str]) -> bytes:
    """The data key of a wrapped record; EnvelopeError if altered or another KEK's."""
    try:
        raw = base64.b64decode(record["wrapped"], validate=True)
        kid = kek_id(kek)
        if record["kek"] != kid:
            raise EnvelopeError(f"data key of {record['file']} is wrapped by key "
                                f"{record['kek']}, not {kid}")
        return AESGCM(kek).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                   _WRAP_CONTEXT + record["file"].encode() + kid.encode())
    except (KeyError, ValueError, InvalidTag):
        raise EnvelopeError("a wrapped data key is damaged or altered") from None
