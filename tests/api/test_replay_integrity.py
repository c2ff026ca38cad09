"""What a person sees is covered by the seal: one flipped byte in a replay file, through a
real server and HTTP, fails verification, and the console refuses to play or export it."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.compliance import (
    VISIT,
    audit_rows,
    call,
    compliance_token,
    fabricate,
    flip_byte,
    last_seq,
)
from tests.support.recording import cli
from tests.support.server import ROOT, running_server


def verify_dir(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "recordings", "verify", "--dir",
                           str(folder)], cwd=ROOT, capture_output=True, text=True)


async def test_a_flipped_byte_in_a_replay_file_fails_verify_and_is_refused(
        tmp_path: Path) -> None:
    recording = fabricate(tmp_path / "data")
    with running_server(recording.data_dir) as server:
        token = compliance_token(server)
        assert cli(server, "recordings", "verify", VISIT).returncode == 0
        status, data, _ = await call(server, "GET", f"/api/recordings/{VISIT}/export", token)
        assert status == 200, data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(tmp_path / "export")
        assert verify_dir(tmp_path / "export").returncode == 0

        # In an export: the offline check fails on the one flipped byte.
        flip_byte(tmp_path / "export" / "media" / "family-9.webm")
        result = verify_dir(tmp_path / "export")
        assert result.returncode == 1
        assert "media/family-9.webm was altered after the visit" in result.stdout

        # On the server: verify fails, and the console neither lists, serves nor exports it.
        flip_byte(recording.finals["family-9"])
        since = last_seq(recording)
        result = cli(server, "recordings", "verify", VISIT)
        assert result.returncode == 1
        assert "final/family-9.webm was altered after the visit" in result.stdout
        status, body, _ = await call(server, "GET", f"/api/recordings/{VISIT}", token)
        assert status == 200 and body["integrity"]["ok"] is False
        inmate, family = body["finals"]
        assert "url" in inmate and "refused" not in inmate
        assert "url" not in family
        assert family["refused"].startswith("The replay file of Casey Reyes failed its "
                                            "integrity check and is not played: final/"
                                            "family-9.webm was altered after the visit")
        status, data, _ = await call(server, "GET", f"/api/recordings/{VISIT}/media/family-9",
                                     token)
        assert (status, data["error"]) == (409, "replay_file_altered")
        status, data, _ = await call(server, "GET", f"/api/recordings/{VISIT}/media/inmate-41",
                                     token, headers={"Range": "bytes=0-9"})
        assert status == 206  # the intact party still plays
        status, data, _ = await call(server, "GET", f"/api/recordings/{VISIT}/export", token)
        assert (status, data["error"]) == (409, "replay_file_altered")
        assert "The export was refused" in data["message"]

        refused = [(r["action"], r["subject"], r["actor"]) for r in audit_rows(recording, since)
                   if r["outcome"] == "refused"]
        assert refused == [("recording_replay", "family-9", "compliance-1")] * 2 + [
            ("recording_export", "family-9", "compliance-1")]
        assert all("altered after the visit" in r["reason"]
                   for r in audit_rows(recording, since) if r["outcome"] == "refused")
