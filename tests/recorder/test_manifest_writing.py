"""Writing the signed manifest: the recording key, restart continuity, refusals."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from recorder.manifest import MANIFEST_NAME, Manifest, ManifestError
from recorder.signing import RecordingKey, load_or_create, verify_with
from recorder.verify import verify_visit
from tests.support.custody import TRACKS, Clock, lines_of, record, write_segment

# -- signing -----------------------------------------------------------------------------


def test_recording_key_created_once_and_never_overwritten(tmp_path: Path) -> None:
    private, public = tmp_path / "keys" / "recording.pem", tmp_path / "pub" / "recording.pub"
    key = load_or_create(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_bytes() == key.public_pem
    assert len(key.key_id) == 16
    before = private.read_bytes()
    again = load_or_create(private, public)
    assert again.key_id == key.key_id and private.read_bytes() == before
    public.unlink()  # a lost public file is rewritten from the private key
    assert load_or_create(private, public).key_id == key.key_id
    public.write_bytes(RecordingKey.generate().public_pem)
    with pytest.raises(ValueError, match="does not belong"):
        load_or_create(private, public)
    private.unlink()  # a public file without its private key: no silent new key
    with pytest.raises(ValueError, match="refusing"):
        load_or_create(private, public)


def test_sign_and_verify_with(key: RecordingKey) -> None:
    sig = key.sign(b"abc")
    assert verify_with(key.public_pem, b"abc", sig)
    assert not verify_with(key.public_pem, b"abd", sig)
    assert not verify_with(RecordingKey.generate().public_pem, b"abc", sig)
    assert not verify_with(key.public_pem, b"abc", "not base64!")
    with pytest.raises(ValueError):
        verify_with(b"not a key", b"abc", sig)


# -- writing: restart continuity and refusals ---------------------------------------------


def test_restart_continues_the_chain(tmp_path: Path, key: RecordingKey) -> None:
    visit_dir = tmp_path / "v"
    clock = Clock()
    record(visit_dir, key, clock, range(1, 3)).close()  # recorder stops without sealing
    again = Manifest.open(visit_dir, key, clock)  # restarted process
    assert again.seq == 6 and again.segments == 6 and again.tracks == sorted(TRACKS)
    with pytest.raises(ValueError, match="already in the manifest"):
        again.append_segment({"track": "family-1-video", "time_base": "1/90000",
                              "path": visit_dir / "family-1-video" / "segment-00002.webm"})
    # A lower number than the last one means a file was overwritten or reported late.
    stale = visit_dir / "family-1-audio" / "segment-0001.webm"
    stale.write_bytes(b"late")
    with pytest.raises(ValueError, match="in order"):
        again.append_segment({"track": "family-1-audio", "path": stale, "time_base": "1/48000"})
    stale.unlink()
    record(visit_dir, key, clock, range(3, 4), manifest=again)
    crashed = write_segment(visit_dir, "family-1-video", 4)
    again.append_segment(crashed, recovered=True, note="salvaged after a crash")
    seal = again.seal({})
    report = verify_visit(visit_dir, key.public_pem, seal)
    assert report.ok, report.problems
    assert report.segments == 10
    entries = lines_of(visit_dir / MANIFEST_NAME)
    assert entries[6]["prev"] == entries[5]["hash"]
    assert entries[-2]["type"] == "recovered" and entries[-2]["note"] == "salvaged after a crash"
    with pytest.raises(ManifestError, match="already sealed"):
        Manifest.open(visit_dir, key, clock)
    with pytest.raises(ManifestError, match="sealed"):
        again.append_policy({"late": True})


def test_open_refuses_damaged_or_foreign_manifests(tmp_path: Path, key: RecordingKey) -> None:
    visit_dir = tmp_path / "v"
    record(visit_dir, key, Clock(), range(1, 2)).close()
    path = visit_dir / MANIFEST_NAME
    good = path.read_bytes()
    with pytest.raises(ManifestError, match="recording key"):
        Manifest.open(visit_dir, RecordingKey.generate(), Clock())
    path.write_bytes(good[:-10])
    with pytest.raises(ManifestError, match="incomplete line"):
        Manifest.open(visit_dir, key, Clock())
    path.write_bytes(good.replace(b'"bytes":', b'"bytes":1', 1))
    with pytest.raises(ManifestError, match="seq 1"):
        Manifest.open(visit_dir, key, Clock())


def test_append_rejects_paths_outside_the_track_folder(tmp_path: Path, key: RecordingKey) -> None:
    visit_dir = tmp_path / "v"
    manifest = Manifest.open(visit_dir, key, Clock())
    info = write_segment(visit_dir, "family-1-video", 1)
    with pytest.raises(ValueError, match="not <track>"):
        manifest.append_segment({**info, "track": "family-1-audio"})
    outside = tmp_path / "segment-00001.webm"
    outside.write_bytes(b"x")
    with pytest.raises(ValueError, match="not inside"):
        manifest.append_segment({**info, "path": outside})
    # A path relative to the visit folder is accepted.
    entry = manifest.append_segment({**info, "path": "family-1-video/segment-00001.webm"})
    assert entry["file"] == "family-1-video/segment-00001.webm"
    manifest.close()


def test_a_digest_from_the_writer_is_used_only_for_the_bytes_it_hashed(
        tmp_path: Path, key: RecordingKey) -> None:
    """The WebM writer hashes a segment as it writes it; the manifest takes that digest,
    but not for a file whose size changed since, and verification reads the file anyway."""
    visit_dir = tmp_path / "v"
    manifest = Manifest.open(visit_dir, key, Clock())
    info = write_segment(visit_dir, "family-1-video", 1)
    data = Path(info["path"]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError, match="bytes that were hashed"):
        manifest.append_segment({**info, "sha256": digest, "bytes": len(data) - 1})
    entry = manifest.append_segment({**info, "sha256": digest, "bytes": len(data)})
    assert (entry["sha256"], entry["bytes"]) == (digest, len(data))
    manifest.close()
    assert verify_visit(visit_dir, key.public_pem, allow_unsealed=True).ok
    wrong = write_segment(visit_dir, "family-1-video", 2)
    manifest = Manifest.open(visit_dir, key, Clock())
    manifest.append_segment({**wrong, "sha256": "0" * 64,
                             "bytes": Path(wrong["path"]).stat().st_size})
    manifest.close()
    report = verify_visit(visit_dir, key.public_pem, allow_unsealed=True)
    assert not report.ok and any("segment-00002" in p for p in report.problems)
