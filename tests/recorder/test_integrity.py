"""Chain of custody for recordings: signed manifest, verification, offline export."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from recorder.export import (
    SCRIPT_END,
    SCRIPT_START,
    VERIFYING_NAME,
    export_visit,
)
from recorder.manifest import (
    GENESIS,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    canonical,
    entry_hash,
    signed_bytes,
)
from recorder.signing import RecordingKey, load_or_create, verify_with
from recorder.verify import Report, verify_export, verify_visit
from recorder.verify import main as verify_main

# Three tracks whose segments interleave in time; H.264 video goes to .mkv.
TRACKS = {"family-1-video": ("webm", 90000), "family-1-audio": ("webm", 48000),
          "inmate-7-video": ("mkv", 90000)}
PER_TRACK = 3


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


@dataclass
class Recording:
    visit_dir: Path
    key: RecordingKey
    seal: str

    @property
    def manifest(self) -> Path:
        return self.visit_dir / MANIFEST_NAME

    def seg(self, track: str, number: int) -> Path:
        ext = TRACKS[track][0]
        return self.visit_dir / track / f"segment-{number:05d}.{ext}"

    def verify(self, expected_seal: str | None = None, allow_unsealed: bool = False) -> Report:
        return verify_visit(self.visit_dir, self.key.public_pem, expected_seal,
                            allow_unsealed=allow_unsealed)


def write_segment(visit_dir: Path, track: str, number: int) -> dict[str, object]:
    ext, rate = TRACKS[track]
    path = visit_dir / track / f"segment-{number:05d}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Any bytes do for integrity; distinct content per file so swaps are detectable.
    path.write_bytes(f"{track}/{number}\n".encode() + os.urandom(2000 + 37 * number))
    first = (number - 1) * 10 * rate
    return {"track": track, "path": path, "first_pts": first,
            "last_pts": first + 10 * rate - 3000, "time_base": f"1/{rate}"}


def record(visit_dir: Path, key: RecordingKey, clock: Clock, numbers: range,
           manifest: Manifest | None = None) -> Manifest:
    manifest = manifest or Manifest.open(visit_dir, key, clock)
    for number in numbers:
        for track in TRACKS:  # interleaved: segment n of every track, then n + 1
            manifest.append_segment(write_segment(visit_dir, track, number))
    return manifest


@pytest.fixture(scope="module")
def key() -> RecordingKey:
    return RecordingKey.generate()


@pytest.fixture
def rec(tmp_path: Path, key: RecordingKey) -> Recording:
    visit_dir = tmp_path / "recordings" / "visit-42"
    manifest = record(visit_dir, key, Clock(), range(1, PER_TRACK + 1))
    # Non-ASCII and DEL: the hand check's jq must reproduce the hashed bytes exactly.
    manifest.append_policy({"held_until_recording": True, "site": "Lüneburg — Haus 2\x7f"})
    # Floats as recorder/session.py passes them (final file offsets).
    seal = manifest.seal({"cause": "completed", "finals": {"family-1": 0.125, "inmate-7": 2.0}})
    return Recording(visit_dir, key, seal)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def write_lines(path: Path, entries: list[dict]) -> None:
    path.write_bytes(b"".join(canonical(e) + b"\n" for e in entries))


def failed_problems(report: Report) -> str:
    """The problems of a report that must have failed, as one text to search."""
    assert not report.ok
    return "\n".join(report.problems)


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
    assert seal["extra"] == {"cause": "completed",
                             "finals": {"family-1": 0.125, "inmate-7": 2}}
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
    (rec.visit_dir / "final").mkdir()
    (rec.visit_dir / "final" / "inmate-7.mkv").write_bytes(b"joined")
    assert rec.verify().ok


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


def resign(entries: list[dict], signer: RecordingKey, start: int, key_id: str = "") -> None:
    """Recompute seq, prev, hash and sig from ``start`` on, as a forger would."""
    for index in range(start, len(entries)):
        entry = entries[index]
        entry["seq"] = index + 1
        entry["prev"] = entries[index - 1]["hash"] if index else GENESIS
        entry["key_id"] = key_id or signer.key_id
        if entry["type"] == "seal":
            entry["last"] = entry["prev"]
        entry.pop("hash", None)
        entry.pop("sig", None)
        entry["hash"] = entry_hash(entry)
        entry["sig"] = signer.sign(signed_bytes(entry["hash"]))


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


# -- export ------------------------------------------------------------------------------------


def make_export(rec: Recording, tmp_path: Path) -> tuple[Path, Path]:
    final = tmp_path / "finals" / "family-1.webm"
    final.parent.mkdir()
    final.write_bytes(b"joined file")
    custody = [{"action": "recording.export", "actor": "officer.ng", "at": 1_700_000_500}]
    out = export_visit(rec.visit_dir, rec.key.public_pem, tmp_path / "out" / "visit-42.zip",
                       custody, rec.seal, [final])
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(unzipped)
    return out, unzipped


def test_export_round_trip_verifies_offline(rec: Recording, tmp_path: Path) -> None:
    out, unzipped = make_export(rec, tmp_path)
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
    assert {"media/family-1.webm", "manifest.jsonl", "seal.txt", "recording-public-key.pem",
            "custody.json", "VERIFYING.txt",
            "segments/inmate-7-video/segment-00003.mkv"} <= names
    assert len([n for n in names if n.startswith("segments/")]) == 9
    assert (unzipped / "seal.txt").read_text().strip() == rec.seal
    assert json.loads((unzipped / "custody.json").read_text())[0]["actor"] == "officer.ng"
    report = verify_export(unzipped)
    assert report.ok, report.problems
    assert report.segments == 9 and report.seal == rec.seal
    # An unzip tool that extracts into a folder named after the zip works too.
    wrapped = tmp_path / "wrapped"
    shutil.copytree(unzipped, wrapped / "visit-42")
    assert verify_export(wrapped).ok
    assert verify_main(["--dir", str(unzipped)]) == 0
    with pytest.raises(FileExistsError):
        export_visit(rec.visit_dir, rec.key.public_pem, out, [], rec.seal, [])


def test_tampered_export_fails(rec: Recording, tmp_path: Path) -> None:
    _, unzipped = make_export(rec, tmp_path)
    segment = unzipped / "segments" / "family-1-video" / "segment-00002.webm"
    segment.write_bytes(segment.read_bytes()[:-1])
    report = verify_export(unzipped)
    assert not report.ok
    assert report.problems[0].startswith("family-1-video/segment-00002.webm (seq 4) has")
    assert verify_main(["--dir", str(unzipped)]) == 1
    # A bundled key swapped for the forger's own is caught against the published key.
    (unzipped / "recording-public-key.pem").write_bytes(RecordingKey.generate().public_pem)
    report = verify_export(unzipped, public_pem=rec.key.public_pem)
    assert "recording-public-key.pem is not the recording key given" in report.problems[0]


def test_export_seal_txt_is_checked(rec: Recording, tmp_path: Path) -> None:
    _, unzipped = make_export(rec, tmp_path)
    (unzipped / "seal.txt").write_text("0" * 64 + "\n")
    report = verify_export(unzipped)
    assert "the seal stored when the visit ended is " + "0" * 64 in failed_problems(report)


HAND_TOOLS = ("bash", "openssl", "jq", "sha256sum", "base64")


def hand_script(unzipped: Path) -> str:
    text = (unzipped / VERIFYING_NAME).read_text()
    return text.split(SCRIPT_START + "\n", 1)[1].split(SCRIPT_END, 1)[0]


def run_hand_script(unzipped: Path) -> str:
    result = subprocess.run(["bash", "-c", hand_script(unzipped)], cwd=unzipped,
                            capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


@pytest.mark.skipif(any(shutil.which(tool) is None for tool in HAND_TOOLS),
                    reason="needs bash, openssl, jq, sha256sum and base64 on PATH")
def test_verifying_txt_hand_check_works(rec: Recording, tmp_path: Path) -> None:
    _, unzipped = make_export(rec, tmp_path)
    text = (unzipped / VERIFYING_NAME).read_text()
    assert "visitbridge recordings verify --dir <unzipped folder>" in text
    assert rec.key.key_id in text
    output = run_hand_script(unzipped)
    assert "FAILED" not in output, output
    assert "seal: OK" in output
    assert output.count(": OK") == 9 + 1

    # The single-signature command, exactly as printed, on the seal line.
    seal = lines_of(unzipped / MANIFEST_NAME)[-1]
    (unzipped / "hash.txt").write_bytes(seal["hash"].encode())
    subprocess.run(["bash", "-c", f"printf '%s' '{seal['sig']}' | base64 -d > sig.bin"],
                   cwd=unzipped, check=True)
    alone = text.split("To check one signature alone", 1)[1].splitlines()
    command = "\n".join(line for line in alone if line.startswith("    "))
    assert command.lstrip().startswith("openssl pkeyutl -verify")
    result = subprocess.run(["bash", "-c", command], cwd=unzipped, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and "Signature Verified Successfully" in result.stdout

    # Tampering shows up by hand too: a flipped byte, and a re-signed edited line.
    segment = unzipped / "segments" / "inmate-7-video" / "segment-00002.mkv"
    data = bytearray(segment.read_bytes())
    data[7] ^= 0x80
    segment.write_bytes(bytes(data))
    entries = lines_of(unzipped / MANIFEST_NAME)
    entries[2]["bytes"] += 1
    resign(entries, RecordingKey.generate(), start=2, key_id=rec.key.key_id)
    write_lines(unzipped / MANIFEST_NAME, entries)
    (unzipped / "segments" / "family-1-audio" / "segment-00009.webm").write_bytes(b"x")
    output = run_hand_script(unzipped)
    assert "segments/inmate-7-video/segment-00002.mkv: FAILED" in output
    assert "FAILED: seq 3: bad signature" in output
    assert "FAILED: seq 2: bad signature" not in output
    assert "FAILED: not in manifest: segments/family-1-audio/segment-00009.webm" in output
    assert "FAILED: the seal differs from seal.txt" in output
