"""File objects over the encrypted format of ``recorder/envelope.py``.

``EncryptedWriter`` is what the muxers write through when recordings are encrypted:
``write`` fills a chunk, ``flush`` seals what is held as a chunk of its own (so the
recorder's every-half-second flush puts its media on disk as it does unencrypted), and
``close`` seals the final chunk. A muxer that seeks back to patch a header (libavformat's
Matroska muxer, for H.264 and the final files) gets the chunk re-sealed in place, under a
fresh nonce. While it never seeks back, the ciphertext is hashed as it is written, so
the manifest need not read the segment again.

``DecryptedReader`` reads such a file with random access (PyAV seeks, players ask for
ranges): the chunk table is read once at opening, and the last chunk is checked then, so
a truncated file is refused before any byte is trusted.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.envelope import (
    HEADER_BYTES,
    LENGTH_BYTES,
    MAX_CHUNK,
    NONCE_BYTES,
    Chunk,
    EnvelopeError,
    chunk_length,
    file_id,
    open_chunk,
    seal_chunk,
)
from recorder.manifest import Hasher


class EncryptedWriter(io.RawIOBase):
    """Encrypts what is written into ``file`` (a new, empty, binary file it now owns)."""

    def __init__(self, file: BinaryIO, key: bytes, header: bytes, *, hashed: bool = True
                 ) -> None:
        super().__init__()
        self._file = file
        self._key = AESGCM(key)
        self._header = header
        self._chunks: list[Chunk] = []
        self._held = bytearray()  # plaintext after the last sealed chunk
        self._pos = 0  # in the plaintext
        self._sealed_end = 0  # plaintext bytes in sealed chunks
        self._end = 0  # plaintext bytes written
        self._sha256: Hasher | None = hashlib.sha256() if hashed else None
        self._put(header)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        end = self._end
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: end}[whence]
        if not 0 <= base + offset <= end:
            raise OSError(f"cannot seek to {base + offset} in an encrypted file of {end}")
        self._pos = base + offset
        return self._pos

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos == self._end:  # appending: every write but a muxer's patches
            self._held += data
            self._pos = self._end = self._end + len(data)
            while len(self._held) > MAX_CHUNK:
                self._seal(MAX_CHUNK, final=False)
            return len(data)
        data = bytes(data)
        sealed_end = self._sealed_end
        if self._pos < sealed_end:  # a patch of what is already sealed
            take = min(len(data), sealed_end - self._pos)
            self._patch(self._pos, data[:take])
            self._pos += take
            rest = data[take:]
            if rest:
                self.write(rest)
            return len(data)
        at = self._pos - sealed_end
        self._held[at:at + len(data)] = data
        self._pos += len(data)
        self._end = max(self._end, self._pos)
        while len(self._held) > MAX_CHUNK:
            self._seal(MAX_CHUNK, final=False)
        return len(data)

    def flush(self) -> None:
        """Seal what is held as a chunk, so that it is in the file."""
        if self._held and not self.closed:
            self._seal(len(self._held), final=False)

    def close(self) -> None:
        if not self.closed:
            try:
                self._seal(len(self._held), final=True)
                self._file.close()
            finally:
                super().close()

    def digest(self) -> str | None:
        """SHA-256 of the file as written, unless not ``hashed`` or a chunk was re-sealed
        in place."""
        return self._sha256.hexdigest() if self._sha256 is not None else None

    def _seal(self, size: int, final: bool) -> None:
        if size == len(self._held):
            piece, self._held = bytes(self._held), bytearray()
        else:
            piece, self._held = bytes(self._held[:size]), self._held[size:]
        offset = self._chunks[-1].end if self._chunks else HEADER_BYTES
        stored = seal_chunk(self._key, self._header, len(self._chunks), final, piece)
        self._chunks.append(Chunk(offset, len(stored) - LENGTH_BYTES - NONCE_BYTES,
                                  self._sealed_end))
        self._sealed_end += size
        self._put(stored)

    def _put(self, data: bytes) -> None:
        if self._sha256 is not None:
            self._sha256.update(data)
        written = 0
        while written < len(data):
            written += self._file.write(data[written:]) or 0

    def _patch(self, at: int, data: bytes) -> None:
        """Re-seal the sealed chunks that ``data`` (at plaintext ``at``) falls in."""
        self._sha256 = None
        end_of_file = self._chunks[-1].end
        for index, chunk in enumerate(self._chunks):
            lo, hi = max(at, chunk.start), min(at + len(data), chunk.start + chunk.plain)
            if lo >= hi:
                continue
            self._file.seek(chunk.offset + LENGTH_BYTES)
            plain = bytearray(open_chunk(self._key, self._header, index, False,
                                         self._file.read(NONCE_BYTES + chunk.length)))
            plain[lo - chunk.start:hi - chunk.start] = data[lo - at:hi - at]
            self._file.seek(chunk.offset)
            self._file.write(seal_chunk(self._key, self._header, index, False, bytes(plain)))
        self._file.seek(end_of_file)


class DecryptedReader(io.RawIOBase):
    """Reads the plaintext of an encrypted file; EnvelopeError on any damage.

    ``salvage`` (crash recovery only) reads what a killed writer left: the chunks that
    authenticate, up to the first that does not, final chunk or not."""

    def __init__(self, file: BinaryIO, key: bytes, *, salvage: bool = False) -> None:
        super().__init__()
        self._file = file
        self._key = AESGCM(key)
        self._header = file.read(HEADER_BYTES)
        file_id(self._header)
        self._chunks = self._table(salvage)
        self._final = len(self._chunks) - 1
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None
        if salvage:
            self._salvage()
        else:
            self._plain(self._final)  # the final chunk must be there and intact

    @property
    def size(self) -> int:
        last = self._chunks[-1]
        return last.start + last.plain

    def _salvage(self) -> None:
        for index in range(len(self._chunks)):
            for final in (False, True):
                self._final = index if final else -1
                try:
                    self._plain(index)
                    break
                except EnvelopeError:
                    continue
            else:
                del self._chunks[index:]
                break
            if final:
                del self._chunks[index + 1:]
                break
        if not self._chunks:
            raise EnvelopeError("no chunk of the file can be read")

    def _table(self, salvage: bool = False) -> list[Chunk]:
        size = os.fstat(self._file.fileno()).st_size
        chunks: list[Chunk] = []
        offset, start = HEADER_BYTES, 0
        while offset < size:
            self._file.seek(offset)
            prefix = self._file.read(LENGTH_BYTES)
            try:
                if len(prefix) < LENGTH_BYTES:
                    raise EnvelopeError("the file ends inside a chunk: truncated")
                chunk = Chunk(offset, chunk_length(prefix), start)
                if chunk.end > size:
                    raise EnvelopeError("the file ends inside a chunk: truncated")
            except EnvelopeError:
                if salvage:
                    break
                raise
            chunks.append(chunk)
            offset, start = chunk.end, start + chunk.plain
        if not chunks and not salvage:
            raise EnvelopeError("the file has no chunks: truncated")
        return chunks

    def _plain(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        chunk = self._chunks[index]
        self._file.seek(chunk.offset + LENGTH_BYTES)
        plain = open_chunk(self._key, self._header, index, index == self._final,
                           self._file.read(NONCE_BYTES + chunk.length))
        self._cached = (index, plain)
        return plain

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos >= self.size or not len(buffer):
            return 0
        index = self._index_of(self._pos)
        chunk = self._chunks[index]
        at = self._pos - chunk.start
        piece = memoryview(self._plain(index))[at:at + len(buffer)]  # no copy of the rest
        buffer[:len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

    def _index_of(self, pos: int) -> int:
        lo, hi = 0, len(self._chunks) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._chunks[mid].start <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            super().close()
