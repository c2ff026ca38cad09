"""One flipped byte in any file of an export fails the offline check and the hand check:
exports made by a real server over HTTP and by the CLI, carrying the time-stamped
checkpoint of their seal from a real RFC 3161 authority."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from pathlib import Path

from tests.support.compliance import VISIT, call, compliance_token, fabricate
from tests.support.exports import check_every_flip_fails, check_intact, kinds
from tests.support.recording import cli
from tests.support.server import running_server
from tests.support.server_records import server_rows
from tests.support.tsa import Authority

KINDS = {"segments", "media", "manifest.jsonl", "seal.txt", "recording-public-key.pem",
         "custody.json", "VERIFYING.txt", "export-files.json", "export-files.sig",
         "anchors/checkpoint-1.json", "anchors/checkpoint-1.tsr", "anchors/checkpoint-1.sig",
         "anchors/tsa-ca.pem"}


async def wait_anchored(data_dir: Path, visit: str, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server_rows(data_dir, "SELECT 1 FROM checkpoint_seals WHERE visit = ?", (visit,)):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the seal of {visit} was not time-stamped")


async def test_a_flipped_byte_in_any_file_of_a_real_export_fails(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "tsa").start()
    recording = fabricate(tmp_path / "data")
    try:
        with running_server(recording.data_dir, VISITBRIDGE_TSA_URL=authority.url,
                            VISITBRIDGE_TSA_CA_FILE=str(authority.ca)) as server:
            await wait_anchored(recording.data_dir, VISIT)
            status, data, _ = await call(server, "GET", f"/api/recordings/{VISIT}/export",
                                         compliance_token(server))
            assert status == 200, data
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(tmp_path / "api")
            exported = cli(server, "recordings", "export", VISIT, "--out",
                           str(tmp_path / "cli.zip"))
            assert exported.returncode == 0, exported.stderr
            with zipfile.ZipFile(tmp_path / "cli.zip") as archive:
                archive.extractall(tmp_path / "cli")
    finally:
        authority.stop()
    published = recording.data_dir / "keys" / "recording.public.pem"
    flipped = check_every_flip_fails(tmp_path / "api", tmp_path / "flips", published)
    assert flipped == KINDS
    # The CLI builds its export with the same code: it holds the same kinds of file and
    # verifies both ways as made.
    check_intact(tmp_path / "cli", published)
    assert set(kinds(tmp_path / "cli")) == KINDS
