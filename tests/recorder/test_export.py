"""The export: a zip that verifies offline, with the CLI and by hand with common tools."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from recorder.export import VERIFYING_NAME, export_visit
from recorder.manifest import MANIFEST_NAME
from recorder.replay_files import FINAL_DIR
from recorder.signing import RecordingKey
from recorder.verify import main as verify_main
from recorder.verify import verify_export
from tests.support.binaries import need_binary
from tests.support.custody import Recording, failed_problems, lines_of, resign, write_lines
from tests.support.exports import HAND_TOOLS, run_hand_script

# -- export ------------------------------------------------------------------------------------


def make_export(rec: Recording, tmp_path: Path) -> tuple[Path, Path]:
    final = rec.visit_dir / FINAL_DIR / "family-1.webm"
    custody = [{"action": "recording.export", "actor": "officer.ng", "at": 1_700_000_500}]
    out = export_visit(rec.visit_dir, rec.key, tmp_path / "out" / "visit-42.zip",
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
        export_visit(rec.visit_dir, rec.key, out, [], rec.seal, [])


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


def test_verifying_txt_hand_check_works(rec: Recording, tmp_path: Path) -> None:
    for tool in HAND_TOOLS:
        need_binary(tool)
    _, unzipped = make_export(rec, tmp_path)
    text = (unzipped / VERIFYING_NAME).read_text()
    assert "visitbridge recordings verify --dir <unzipped folder>" in text
    assert rec.key.key_id in text
    output = run_hand_script(unzipped)
    assert "FAILED" not in output, output
    assert "seal: OK" in output and "export-files: OK" in output
    # Twice each segment and the media file (the list of files, then the manifest or the
    # seal), once each of the 5 other files, the list's signature and the seal.
    assert output.count(": OK") == 2 * (9 + 1) + 5 + 1 + 1, output
    assert verify_export(unzipped).ok  # the hand check left nothing in the folder

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


def test_a_flipped_byte_in_a_replay_file_fails_the_export_check(rec: Recording,
                                                                  tmp_path: Path) -> None:
    for tool in HAND_TOOLS:
        need_binary(tool)
    _, unzipped = make_export(rec, tmp_path)
    media = unzipped / "media" / "family-1.webm"
    data = bytearray(media.read_bytes())
    data[3] ^= 0x01
    media.write_bytes(bytes(data))
    (unzipped / "media" / "inmate-7.webm").write_bytes(b"added later")
    problems = failed_problems(verify_export(unzipped))
    assert "media/family-1.webm was altered after the visit" in problems
    assert "media/inmate-7.webm is not covered by the seal" in problems
    assert verify_main(["--dir", str(unzipped)]) == 1
    output = run_hand_script(unzipped)
    assert "media/family-1.webm: FAILED" in output
    assert "FAILED: not in the seal: media/inmate-7.webm" in output
    assert "seal: OK" in output  # the manifest itself is intact
