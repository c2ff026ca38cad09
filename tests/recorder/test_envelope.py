"""The encrypted file format and key wrapping, without a server."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from recorder.encrypted import DecryptedReader, EncryptedWriter
from recorder.envelope import (
    HEADER_BYTES,
    EnvelopeError,
    chunk_length,
    decrypt,
    encrypt,
    new_header,
    new_key,
    unwrap,
    wrap,
)

DATA = os.urandom(100_000)


def chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the stored chunks of an encrypted blob."""
    out, offset = [], HEADER_BYTES
    while offset < len(blob):
        end = offset + 4 + 12 + chunk_length(blob[offset:offset + 4])
        out.append(blob[offset:end])
        offset = end
    return blob[:HEADER_BYTES], out


def test_round_trip_and_bytes_are_not_the_plaintext() -> None:
    key = new_key()
    blob = encrypt(key, DATA, chunk=30_000)
    assert decrypt(key, blob) == DATA
    assert DATA[:1000] not in blob


def test_a_reordered_chunk_is_detected() -> None:
    key = new_key()
    header, parts = chunks(encrypt(key, DATA, chunk=30_000))
    parts[0], parts[1] = parts[1], parts[0]
    with pytest.raises(EnvelopeError, match="chunk 0"):
        decrypt(key, header + b"".join(parts))


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_truncation_at_a_chunk_boundary_is_detected(keep: int) -> None:
    key = new_key()
    header, parts = chunks(encrypt(key, DATA, chunk=30_000))
    assert len(parts) == 4
    with pytest.raises(EnvelopeError):
        decrypt(key, header + b"".join(parts[:keep]))


def test_truncation_inside_a_chunk_and_extension_are_detected() -> None:
    key = new_key()
    blob = encrypt(key, DATA, chunk=30_000)
    with pytest.raises(EnvelopeError, match="truncated"):
        decrypt(key, blob[:-5])
    header, parts = chunks(blob)
    with pytest.raises(EnvelopeError):
        decrypt(key, blob + parts[-1])


def test_a_chunk_from_another_file_or_key_is_refused() -> None:
    key = new_key()
    one, two = encrypt(key, DATA), encrypt(key, DATA)
    with pytest.raises(EnvelopeError):
        decrypt(key, two[:HEADER_BYTES] + one[HEADER_BYTES:])
    with pytest.raises(EnvelopeError):
        decrypt(new_key(), one)


def test_wrapped_key_is_bound_to_its_file_and_kek() -> None:
    kek, data_key = new_key(), new_key()
    record = wrap(kek, "aa" * 16, data_key)
    assert unwrap(kek, record) == data_key
    with pytest.raises(EnvelopeError):
        unwrap(kek, {**record, "file": "bb" * 16})
    with pytest.raises(EnvelopeError):
        unwrap(new_key(), record)


def open_writer(path: Path) -> tuple[EncryptedWriter, bytes]:
    key = new_key()
    return EncryptedWriter(open(path, "x+b", buffering=0), key, new_header()), key


def test_writer_seals_a_chunk_at_each_flush_and_patches_in_place(tmp_path: Path) -> None:
    writer, key = open_writer(tmp_path / "f")
    writer.write(DATA[:40_000])
    writer.flush()
    on_disk = (tmp_path / "f").stat().st_size
    assert on_disk > 40_000  # the flushed chunk is in the file before close
    writer.write(DATA[40_000:])
    assert writer.digest() is not None
    writer.seek(10)
    writer.write(b"PATCH")  # a muxer going back to a header
    writer.seek(0, io.SEEK_END)
    writer.write(b"tail")
    writer.close()
    assert writer.digest() is None  # re-sealed: the manifest hashes the file itself
    expected = DATA[:10] + b"PATCH" + DATA[15:] + b"tail"
    assert decrypt(key, (tmp_path / "f").read_bytes()) == expected
    reader = DecryptedReader(open(tmp_path / "f", "rb"), key)
    assert reader.size == len(expected)
    buffered = io.BufferedReader(reader)
    buffered.seek(39_990)
    assert buffered.read(30) == expected[39_990:40_020]  # across the chunk boundary


def test_reader_refuses_a_file_without_its_final_chunk(tmp_path: Path) -> None:
    writer, key = open_writer(tmp_path / "f")
    writer.write(DATA[:50_000])
    writer.flush()
    writer.write(DATA[50_000:])
    writer.flush()  # a killed recorder: no final chunk
    with pytest.raises(EnvelopeError):
        DecryptedReader(open(tmp_path / "f", "rb"), key)
    with open(tmp_path / "f", "ab") as torn:
        torn.write(b"\0\0\1\0partial")
    salvaged = DecryptedReader(open(tmp_path / "f", "rb"), key, salvage=True)
    assert salvaged.read() == DATA
