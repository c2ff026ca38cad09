"""Verifying a recording: the untouched one verifies, every kind of tampering fails."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from recorder.manifest import GENESIS, Manifest, canonical, entry_hash, signed_bytes
from recorder.signing import RecordingKey, verify_with
from recorder.verify import verify_visit
from tests.support.custody import (
    PER_TRACK,
    TRACKS,
    Clock,
    Recording,
    failed_problems,
    lines_of,
    record,
    resign,
    write_lines,
    write_segment,
)

# -- the untouched recording ---------------------------------------------------------------


def test_untouched_recording_verifies(rec: Recording) -> None:
    report = rec.verify(expected_seal=rec.seal)
    assert report.ok, report.problems
    assert report.problems == []
    assert report.segments == 3 * PER_TRACK
    assert report.tracks == sorted(TRACKS)
    assert report.sealed and report.seal == rec.seal
    assert report.key_id == rec.key.key_id
    # Each segment spans 10 s minus one 3000-tick frame; the longest track counts.
    assert report.seconds == pytest.approx(3 * (10 - 3000 / 90000))


def test_manifest_lines_have_the_documented_shape(rec: Recording) -> None:
    entries = lines_of(rec.manifest)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert [e["type"] for e in entries][-2:] == ["policy", "seal"]
    first = entries[0]
    assert first["prev"] == GENESIS
    assert first["track"] == "family-1-video"
    assert first["file"] == "family-1-video/segment-00001.webm"
    assert first["bytes"] == rec.seg("family-1-video", 1).stat().st_size
    assert first["time_base"] == "1/90000" and first["at"] == 1_700_000_000
    assert first["hash"] == entry_hash(first)
    assert verify_with(rec.key.public_pem, signed_bytes(first["hash"]), first["sig"])
    # Interleaved in time, in order within each track.
    assert [e["file"] for e in entries[:3]] == [
        "family-1-video/segment-00001.webm", "family-1-audio/segment-00001.webm",
        "inmate-7-video/segment-00001.mkv"]
    seal = entries[-1]
    assert seal["hash"] == rec.seal and seal["last"] == entries[-2]["hash"]
    assert seal["segments"] == 9 and seal["tracks"] == sorted(TRACKS)
    final = rec.visit_dir / "final" / "family-1.webm"
    assert seal["extra"] == {"cause": "completed",
                             "finals": {"family-1": 0.125, "inmate-7": 2},
                             "final_files": {"family-1.webm": {
                                 "sha256": hashlib.sha256(final.read_bytes()).hexdigest(),
                                 "bytes": final.stat().st_size}}}
    # Lines are written as canonical JSON: what jq -cS reproduces for hand checks.
    assert rec.manifest.read_bytes().splitlines()[0] == canonical(first)


# -- tampering -------------------------------------------------------------------------------


def test_flipped_byte_in_a_segment_fails(rec: Recording) -> None:
    path = rec.seg("family-1-audio", 2)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    report = rec.verify(expected_seal=rec.seal)
    assert not report.ok
    assert report.problems == [
        "family-1-audio/segment-00002.webm (seq 5) was altered: its SHA-256 differs from "
        "the manifest."]


def test_missing_segment_fails(rec: Recording) -> None:
    rec.seg("inmate-7-video", 3).unlink()
    report = rec.verify()
    assert not report.ok
    assert report.problems == ["inmate-7-video/segment-00003.mkv (seq 9) is missing."]


def test_extra_segment_file_fails(rec: Recording) -> None:
    write_segment(rec.visit_dir, "family-1-video", 4)
    stray = rec.visit_dir / "family-1-video" / "notes.bin"
    stray.write_bytes(b"x")
    text = failed_problems(rec.verify())
    assert "family-1-video/segment-00004.webm is on disk but not in the manifest" in text
    assert "family-1-video/notes.bin is on disk but not in the manifest" in text


def test_files_outside_track_folders_are_not_segments(rec: Recording) -> None:
    (rec.visit_dir / "family-1.webm").write_bytes(b"joined replay file")
    (rec.visit_dir / "notes").mkdir()
    (rec.visit_dir / "notes" / "inmate-7.mkv").write_bytes(b"joined")
    assert rec.verify().ok


def test_replay_files_must_be_the_sealed_ones(rec: Recording) -> None:
    final = rec.visit_dir / "final" / "family-1.webm"
    data = bytearray(final.read_bytes())
    data[0] ^= 0x01
    final.write_bytes(bytes(data))
    (rec.visit_dir / "final" / "inmate-7.mkv").write_bytes(b"joined later")
    assert failed_problems(rec.verify()).splitlines() == [
        "final/family-1.webm was altered after the visit: its SHA-256 differs from the one "
        "in the seal.",
        "final/inmate-7.mkv is not covered by the seal: it was added or replaced after the "
        "visit."]
    final.write_bytes(b"joined file, longer")
    (rec.visit_dir / "final" / "inmate-7.mkv").unlink()
    assert failed_problems(rec.verify()).splitlines() == [
        "final/family-1.webm has 19 bytes but the seal says 11: the replay file was altered "
        "after the visit."]
    final.unlink()
    assert failed_problems(rec.verify()).splitlines() == ["final/family-1.webm is missing."]


def test_swapped_segment_files_fail(rec: Recording) -> None:
    a, b = rec.seg("family-1-video", 1), rec.seg("family-1-video", 2)
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    report = rec.verify()
    assert not report.ok
    assert report.problems == [
        "family-1-video/segment-00001.webm (seq 1) does not match the manifest: it holds the "
        "content of family-1-video/segment-00002.webm (seq 4), so segment files were swapped "
        "or copied.",
        "family-1-video/segment-00002.webm (seq 4) does not match the manifest: it holds the "
        "content of family-1-video/segment-00001.webm (seq 1), so segment files were swapped "
        "or copied."]


def test_swapped_manifest_lines_fail(rec: Recording) -> None:
    raw = rec.manifest.read_bytes().splitlines(keepends=True)
    raw[0], raw[3] = raw[3], raw[0]  # segments 1 and 2 of family-1-video
    rec.manifest.write_bytes(b"".join(raw))
    text = failed_problems(rec.verify())
    assert "manifest.jsonl line 1 has seq 4 instead of 1" in text
    assert "seq 4 does not follow the line before it" in text
    assert ("family-1-video/segment-00001.webm (seq 1) comes after segment 2 of track "
            "family-1-video: segments are out of order.") in text


def test_reordered_and_resigned_by_key_holder_still_fails_on_order(rec: Recording) -> None:
    """Even a consistent, validly signed chain must list each track's segments in order."""
    entries = lines_of(rec.manifest)
    entries[0], entries[3] = entries[3], entries[0]
    resign(entries, rec.key, start=0)
    write_lines(rec.manifest, entries)
    report = rec.verify()
    assert not report.ok
    assert report.problems == [
        "Track family-1-video jumps from segment 0 to 2 (seq 1): segment 1 is missing.",
        "family-1-video/segment-00001.webm (seq 4) comes after segment 2 of track "
        "family-1-video: segments are out of order."]


def test_gap_in_a_track_fails(tmp_path: Path, key: RecordingKey) -> None:
    visit_dir = tmp_path / "v"
    manifest = Manifest.open(visit_dir, key, Clock())
    manifest.append_segment(write_segment(visit_dir, "family-1-audio", 1))
    manifest.append_segment(write_segment(visit_dir, "family-1-audio", 3))
    manifest.seal({})
    report = verify_visit(visit_dir, key.public_pem)
    assert report.problems == [
        "Track family-1-audio jumps from segment 1 to 3 (seq 2): segment 2 is missing."]


def test_edited_manifest_line_fails(rec: Recording) -> None:
    entries = lines_of(rec.manifest)
    entries[4]["bytes"] += 1  # the hash and signature are left as they were
    write_lines(rec.manifest, entries)
    text = failed_problems(rec.verify())
    assert "seq 5 was altered: its content does not match its hash." in text
    assert "family-1-audio/segment-00002.webm (seq 5) has" in text


def test_truncated_manifest_without_seal_fails(rec: Recording) -> None:
    raw = rec.manifest.read_bytes().splitlines(keepends=True)
    rec.manifest.write_bytes(b"".join(raw[:-1]))
    report = rec.verify(expected_seal=rec.seal)
    assert not report.ok and not report.sealed
    assert any("not sealed" in p for p in report.problems)
    assert any(rec.seal in p and "not in the manifest" in p for p in report.problems)
    # For a visit still recording, an unsealed manifest is fine.
    live = rec.verify(allow_unsealed=True)
    assert live.ok, live.problems
    assert not live.sealed


def test_seal_line_cut_in_half_fails(rec: Recording) -> None:
    data = rec.manifest.read_bytes()
    rec.manifest.write_bytes(data[: len(data) - 80])
    report = rec.verify(expected_seal=rec.seal)
    assert not report.sealed
    text = failed_problems(report)
    assert "manifest.jsonl line 11 is incomplete" in text
    assert "manifest.jsonl line 11 is not valid JSON" in text
    assert "not sealed" in text


def test_rechained_without_the_key_fails_on_signatures(rec: Recording) -> None:
    entries = lines_of(rec.manifest)
    rec.seg("family-1-audio", 2).write_bytes(b"replacement content")
    entries[4]["sha256"] = hashlib.sha256(b"replacement content").hexdigest()
    entries[4]["bytes"] = len(b"replacement content")
    resign(entries, RecordingKey.generate(), start=4, key_id=rec.key.key_id)
    write_lines(rec.manifest, entries)
    report = rec.verify()
    assert not report.ok
    # Hashes and chain are consistent again; only the signatures give it away.
    assert report.problems == [
        f"seq {n} has an invalid signature: it was not signed by the recording key "
        f"{rec.key.key_id} (re-written by someone without the key?)." for n in range(5, 12)]


def test_tail_cut_and_resealed_without_the_key_fails(rec: Recording) -> None:
    entries = lines_of(rec.manifest)
    rec.seg("inmate-7-video", 3).unlink()
    forged_seal = dict(entries[-1], segments=8)
    entries = entries[:-3] + [entries[-2], forged_seal]  # drop the last segment line
    resign(entries, RecordingKey.generate(), start=len(entries) - 2, key_id=rec.key.key_id)
    write_lines(rec.manifest, entries)
    report = rec.verify()
    assert not report.ok and report.sealed
    assert report.problems == [
        f"seq {n} has an invalid signature: it was not signed by the recording key "
        f"{rec.key.key_id} (re-written by someone without the key?)." for n in (9, 10)]


def test_seal_differs_from_database_fails(rec: Recording) -> None:
    report = rec.verify(expected_seal="f" * 64)
    assert not report.ok
    assert report.problems == [
        f"The seal (seq 11) has hash {rec.seal}, but the seal stored when the visit ended is "
        f"{'f' * 64}: this is not the manifest that was sealed."]


def test_wrong_public_key_fails(rec: Recording) -> None:
    report = verify_visit(rec.visit_dir, RecordingKey.generate().public_pem)
    assert "11 more problems" not in failed_problems(report)
    assert "1 more problem of the same kind (other key) are not listed." in report.problems


def test_live_visit_open_segment_is_not_extra(tmp_path: Path, key: RecordingKey) -> None:
    visit_dir = tmp_path / "live"
    manifest = record(visit_dir, key, Clock(), range(1, 3))
    write_segment(visit_dir, "family-1-video", 3)  # still being written
    assert verify_visit(visit_dir, key.public_pem, allow_unsealed=True).ok
    sealed_view = verify_visit(visit_dir, key.public_pem)
    assert "family-1-video/segment-00003.webm is on disk but not in the manifest" in \
        failed_problems(sealed_view)
    manifest.close()
