"""Segments written through an encrypting vault: the bytes on disk are not media, and
decrypted they are the segment a player decodes (VP8, H.264 through PyAV's seeking
muxer, Opus); a killed writer's file is refused as truncated but salvageable; a key
rotation leaves the files alone and they still decrypt."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import av
import pytest

from recorder.envelope import MAGIC, EnvelopeError
from recorder.keystore import DataKeys, KeyringFile, KeyUnavailable, create_keyring, rotate
from recorder.recovery import recover_visit
from recorder.segments import segment_writer
from recorder.signing import RecordingKey
from recorder.vault import Vault
from tests.support.media import H264, OPUS, VP8, Publisher, decode
from tests.support.segments import frames_of, write_all


def vault_in(tmp: Path) -> Vault:
    if not (tmp / "kek.json").exists():
        create_keyring(tmp / "kek.json")
    return Vault(DataKeys(tmp / "data-keys", KeyringFile(tmp / "kek.json")))


def plaintext(vault: Vault, path: Path, out: Path, salvage: bool = False) -> Path:
    with vault.open("v", path, salvage=salvage) as src:
        out.write_bytes(src.read())
    return out


def opens_as_media(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return any(True for _ in container.decode())
    except av.error.FFmpegError:
        return False


@pytest.mark.parametrize(("codec", "suffix", "count"),
                         [(VP8, ".webm", 30), (H264, ".mkv", 30), (OPUS, ".webm", 100)])
def test_encrypted_segment_decrypts_to_a_playable_segment(tmp_path: Path, codec, suffix: str,
                                                          count: int) -> None:
    vault = vault_in(tmp_path)
    path = tmp_path / f"segment-00001{suffix}"
    writer = segment_writer(path, codec.mimeType, codec.clockRate,
                            open_file=lambda p: vault.create("v", p))
    write_all(writer, frames_of(Publisher(codec), count))
    info = writer.close()
    assert info.bytes == path.stat().st_size
    if info.sha256 is not None:  # hashed as written: it must be the ciphertext's hash
        assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not opens_as_media(path)
    decoded = decode(plaintext(vault, path, tmp_path / f"plain{suffix}"))
    assert decoded.errors == [] and decoded.frames == count
    with pytest.raises(KeyUnavailable, match="recordings_key_file"):
        Vault().open("v", path)


def test_a_killed_writer_leaves_a_file_refused_whole_but_salvageable(tmp_path: Path) -> None:
    vault = vault_in(tmp_path)
    path = tmp_path / "segment-00001.webm"
    frames = frames_of(Publisher(VP8), 45)
    writer = segment_writer(path, "video/VP8", 90000, open_file=lambda p: vault.create("v", p))
    write_all(writer, frames)
    shutil.copy(path, tmp_path / "killed.webm")  # no final chunk yet
    writer.close()
    with pytest.raises(EnvelopeError, match="final chunk"):
        vault.open("v", tmp_path / "killed.webm")
    salvaged = decode(plaintext(vault, tmp_path / "killed.webm", tmp_path / "s.webm", True))
    assert salvaged.errors == [] and salvaged.frames >= 30


def test_rotation_rewraps_keys_and_leaves_the_files(tmp_path: Path) -> None:
    vault = vault_in(tmp_path)
    path = tmp_path / "segment-00001.webm"
    writer = segment_writer(path, "audio/opus", 48000, open_file=lambda p: vault.create("v", p))
    write_all(writer, frames_of(Publisher(OPUS), 50))
    writer.close()
    before = path.read_bytes()
    old = KeyringFile(tmp_path / "kek.json").ids
    new, count = rotate(tmp_path / "kek.json", tmp_path / "data-keys")
    assert count == 1 and KeyringFile(tmp_path / "kek.json").ids == [new] != old
    assert path.read_bytes() == before
    assert decode(plaintext(vault, path, tmp_path / "plain.webm")).frames == 50
    stale = Vault(DataKeys(tmp_path / "data-keys", KeyringFile(tmp_path / "kek.json")))
    (tmp_path / "kek.json").unlink()
    create_keyring(tmp_path / "kek.json")  # another key: the data key cannot be unwrapped
    with pytest.raises(KeyUnavailable):
        stale.open("v", path)


def test_recovery_salvages_an_encrypted_segment_a_crash_left(tmp_path: Path) -> None:
    vault = vault_in(tmp_path)
    visit_dir = tmp_path / "recordings" / "v"
    (visit_dir / "family-1-video").mkdir(parents=True)
    path = visit_dir / "family-1-video" / "segment-00001.webm"
    writer = segment_writer(path, "video/VP8", 90000, open_file=lambda p: vault.create("v", p))
    write_all(writer, frames_of(Publisher(VP8), 45))
    shutil.copy(path, tmp_path / "killed.webm")
    writer.close()
    shutil.copy(tmp_path / "killed.webm", path)  # as kill -9 left it: no final chunk
    key = RecordingKey.generate()
    [recovered] = recover_visit(visit_dir, key, lambda: 1_000.0, vault)
    assert recovered.packets >= 30
    assert path.read_bytes().startswith(MAGIC)  # still encrypted, under a new data key
    decoded = decode(plaintext(vault, path, tmp_path / "plain.webm"))  # whole, final chunk
    assert decoded.errors == [] and decoded.frames == recovered.packets
