"""Recordings encrypted at rest, through a real server: unreadable on disk and without
the key-encryption key, replayed decrypted through the compliance API, still replayed
after a key rotation, and crypto-shredded (audited) by retention."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import aiohttp
import av
import pytest

from recorder.envelope import MAGIC
from recorder.export_keys import decrypt_export
from records.dialect import open_database
from tests.support.compliance import compliance_token
from tests.support.exports import check_every_flip_fails
from tests.support.postgres import server_database
from tests.support.recording import cancel, cli, wait_sealed
from tests.support.server import (
    ROOT,
    Server,
    in_visit,
    inmate_and_family,
    make_server,
    running_server,
    visit_now,
)

VISIT = "rec-crypt"


async def media(server: Server, participant: str, headers: dict[str, str] | None = None
                ) -> tuple[int, bytes, dict[str, str]]:
    token = compliance_token(server)
    async with aiohttp.ClientSession() as http, http.get(
            f"{server.url}/api/recordings/{VISIT}/media/{participant}",
            headers={"Authorization": f"Bearer {token}", **(headers or {})}) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def decoded_frames(server: Server, tmp: Path, participant: str) -> int:
    status, body, _ = await media(server, participant)
    assert status == 200, body[:300]
    path = tmp / f"replayed-{participant}-{time.monotonic_ns()}.webm"
    path.write_bytes(body)
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def unreadable(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode()) == 0
    except av.error.FFmpegError:
        return True


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.webm"))}


def audit(data_dir: Path, action: str) -> list[dict]:
    db = open_database(server_database(data_dir))
    rows = db.execute("SELECT detail FROM audit WHERE action = ?", (action,)).fetchall()
    db.close()
    return [json.loads(r[0]) for r in rows]


# What an encrypted export holds that a plain one does not, or holds differently: the data
# keys, ciphertext segments and replay files decrypted for watching. A flipped byte in each
# other kind of file fails both checks in tests/api/test_export_every_file.py, through the
# same verifier and hand check.
ENCRYPTED_KINDS = {"segment-keys.json", "segments", "media"}
PLAIN_KINDS = {"manifest.jsonl", "seal.txt", "recording-public-key.pem", "custody.json",
               "VERIFYING.txt", "export-files.json", "export-files.sig"}


def check_export(tmp: Path) -> None:
    """The export verifies offline as shipped (ciphertext) and fails with a byte flipped in
    its data keys, a segment or a replay file; its media/ plays, and its segments decrypt
    with the data keys it carries."""
    with zipfile.ZipFile(tmp / "export.zip") as archive:
        archive.extractall(tmp / "export")
    held = check_every_flip_fails(tmp / "export", tmp / "flips", only=ENCRYPTED_KINDS)
    assert held == ENCRYPTED_KINDS | PLAIN_KINDS, held
    assert not unreadable(tmp / "export" / "media" / "inmate-c.webm")
    assert unreadable(next((tmp / "export" / "segments").rglob("segment-00001.webm")))
    plain = decrypt_export(tmp / "export", tmp / "decrypted")
    assert plain and not any(unreadable(p) for p in plain)


async def test_encrypted_recording_replays_only_with_its_key(tmp_path: Path) -> None:
    keyring = tmp_path / "kek.json"
    env = {"VISITBRIDGE_SEGMENT_S": "2", "VISITBRIDGE_RECORDINGS_KEY_FILE": str(keyring)}
    created = cli(make_server(tmp_path, **env), "recordings", "kek", "create")
    assert created.returncode == 0, created.stderr
    with running_server(tmp_path, **env) as server:
        inmate, family = inmate_and_family(server, visit_now(VISIT), "c")
        async with in_visit(inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
            await asyncio.sleep(4)  # segments of 2 s: two or more of each track
            await cancel(server, VISIT)
        await wait_sealed(server, VISIT)
        folder = tmp_path / "recordings" / VISIT
        files = sorted(folder.rglob("*.webm"))
        assert len([f for f in files if f.parent.name != "final"]) >= 4
        for path in files:  # segments and the final replay files alike
            assert path.read_bytes().startswith(MAGIC), path
            assert unreadable(path), path
        verified = cli(server, "recordings", "verify", VISIT)  # ciphertext hashes, no key
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert await decoded_frames(server, tmp_path, "inmate-c") > 100
        status, whole, _ = await media(server, "family-c")
        status, part, headers = await media(server, "family-c", {"Range": "bytes=1000-2999"})
        assert status == 206 and part == whole[1000:3000]
        assert headers["Content-Range"] == f"bytes 1000-2999/{len(whole)}"
        exported = cli(server, "recordings", "export", VISIT, "--out",
                       str(tmp_path / "export.zip"))
        assert exported.returncode == 0, exported.stderr
    check_export(tmp_path)
    before = digests(folder)
    data_keys = tmp_path / "keys" / "recording-data-keys" / f"{VISIT}.jsonl"
    old_kek = {json.loads(line)["kek"] for line in data_keys.read_text().splitlines()}

    rotated = cli(server, "recordings", "kek", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_kek = {json.loads(line)["kek"] for line in data_keys.read_text().splitlines()}
    assert len(new_kek) == 1 and not new_kek & old_kek
    assert digests(folder) == before  # only the data keys were re-wrapped
    assert audit(tmp_path, "recording_key_rotated")[0]["new"] in new_kek
    final = folder / "final" / "inmate-c.webm"
    intact = final.read_bytes()
    with running_server(tmp_path, **env) as server:
        assert await decoded_frames(server, tmp_path, "inmate-c") > 100
        final.write_bytes(intact[:-100])  # cut short: not the file the seal lists
        status, body, _ = await media(server, "inmate-c")
        assert status == 409 and json.loads(body)["error"] == "replay_file_altered"
        final.write_bytes(intact)

    with running_server(tmp_path, VISITBRIDGE_SEGMENT_S="2") as server:  # no key file
        status, body, _ = await media(server, "inmate-c")
        assert status == 503
        assert json.loads(body)["error"] == "key_unavailable"
        assert b"recordings_key_file" in body

    db = open_database(server_database(tmp_path))  # the visit ended two days ago
    with db:
        db.execute("UPDATE recordings SET ends_at = ? WHERE visit = ?",
                   (time.time() - 2 * 86400, VISIT))
    db.close()
    with running_server(tmp_path, **env, VISITBRIDGE_RETENTION_DAYS="1") as server:
        deadline = time.time() + 15
        while not audit(tmp_path, "recording_deleted") and time.time() < deadline:
            await asyncio.sleep(0.2)
    deleted = audit(tmp_path, "recording_deleted")
    assert deleted and deleted[0]["data_keys_shredded"] == len(before)
    assert not data_keys.exists()


@pytest.mark.parametrize("missing", [True, False])
def test_a_configured_key_file_that_is_missing_or_bad_stops_the_server(
        tmp_path: Path, missing: bool) -> None:
    keyring = tmp_path / "kek.json"
    if not missing:
        keyring.write_text("{}")
    server = make_server(tmp_path, VISITBRIDGE_RECORDINGS_KEY_FILE=str(keyring))
    result = subprocess.run([sys.executable, "-m", *server.command], cwd=ROOT, timeout=60,
                            env={**os.environ, **server.env}, capture_output=True, text=True)
    assert result.returncode != 0
    assert str(keyring) in result.stderr + result.stdout
