"""How the recorder, replay and export open recording files: encrypted at rest when a
key-encryption key is configured, plain otherwise.

Writing: ``create`` makes a new file exclusively and, when encrypting, gives it a fresh
data key, recorded (wrapped) in ``DataKeys`` before the first byte is written. Reading:
``open`` looks at the file itself, so recordings made before encryption was turned on
(or after it was turned off) still play; an encrypted file without its key is refused
with ``KeyUnavailable``, saying why.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from recorder.encrypted import DecryptedReader, EncryptedWriter
from recorder.envelope import (
    HEADER_BYTES,
    MAGIC,
    decrypt,
    file_id,
    is_encrypted,
    new_header,
    new_key,
)
from recorder.keystore import DataKeys, KeyUnavailable

__all__ = ["KeyUnavailable", "Vault", "encrypted_file"]

# Files up to this size (segments) are decrypted whole into memory when opened: one pass,
# then read at C speed; larger ones (final files) are decrypted chunk by chunk.
WHOLE_BYTES = 8 << 20


def encrypted_file(path: Path) -> bool:
    with open(path, "rb") as file:
        return is_encrypted(file.read(len(MAGIC)))


class Vault:
    """Opens a recording's files. ``keys`` None: nothing new is encrypted, and an
    encrypted file can be read only through ``lookup`` (an export's own keys)."""

    def __init__(self, keys: DataKeys | None = None, *,
                 lookup: Callable[[str, str], bytes] | None = None) -> None:
        self.keys = keys
        self._lookup = lookup or (keys.key if keys is not None else None)

    @property
    def encrypting(self) -> bool:
        return self.keys is not None

    def create(self, visit: str, path: Path, *, hashed: bool = True) -> BinaryIO:
        """A new file (never an existing one), encrypted if a KEK is configured.
        ``hashed``: an encrypted file hashes its ciphertext as written (segments: the
        manifest need not read them again); files nobody signs that way skip it."""
        raw = open(path, "x+b", buffering=0)
        if self.keys is None:
            return raw
        try:
            header, key = new_header(), new_key()
            self.keys.add(visit, file_id(header), key)
            return EncryptedWriter(raw, key, header, hashed=hashed)  # type: ignore[return-value]
        except BaseException:
            raw.close()
            raise

    def sync(self, visit: str) -> None:
        """Make the visit's recorded data keys durable (before its segments are signed)."""
        if self.keys is not None:
            self.keys.sync(visit)

    def open(self, visit: str, path: Path, *, salvage: bool = False) -> BinaryIO:
        """The plaintext of a recording file, decrypted on the fly if it is encrypted."""
        file = open(path, "rb")
        try:
            header = file.read(HEADER_BYTES)
            file.seek(0)
            if not is_encrypted(header):
                return file
            key = self.data_key(visit, file_id(header))
            if not salvage and os.fstat(file.fileno()).st_size <= WHOLE_BYTES:
                with file:
                    return io.BytesIO(decrypt(key, file.read()))
            return DecryptedReader(file, key, salvage=salvage)  # type: ignore[return-value]
        except BaseException:
            file.close()
            raise

    def open_reader(self, visit: str, file: BinaryIO) -> BinaryIO:
        """The plaintext of a seekable file object already open (an object read from the
        archive bucket), decrypted chunk by chunk if it is encrypted."""
        header = file.read(HEADER_BYTES)
        file.seek(0)
        if not is_encrypted(header):
            return file
        return DecryptedReader(file, self.data_key(visit, file_id(header)))  # type: ignore[return-value]

    def media_input(self, visit: str, path: Path, *, salvage: bool = False) -> str | BinaryIO:
        """What ``av.open`` should read: a plain file by its name (libavformat reads it
        itself, far cheaper than through Python), an encrypted one decrypted."""
        if not encrypted_file(path):
            return str(path)
        return self.open(visit, path, salvage=salvage)

    def media_output(self, visit: str, path: Path) -> str | BinaryIO:
        """What ``av.open`` should write a new file through: by name unless encrypting
        (the caller closes a file object after the container)."""
        if self.keys is None:
            return str(path)
        return self.create(visit, path, hashed=False)

    def data_key(self, visit: str, file: str) -> bytes:
        if self._lookup is None:
            raise KeyUnavailable("this recording is encrypted and no key-encryption key is "
                                 "configured (recordings_key_file)")
        return self._lookup(visit, file)

    def file_key(self, visit: str, path: Path) -> tuple[str, bytes] | None:
        """(file id, data key) of an encrypted file; None for a plain one."""
        with open(path, "rb") as file:
            header = file.read(HEADER_BYTES)
        if not is_encrypted(header):
            return None
        return file_id(header), self.data_key(visit, file_id(header))
