"""A real recorded visit, archived to the S3 bucket, replayed from there in Chromium, and
exported from there into a package that verifies offline."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import aiohttp

from tests.support.browser import chromium, open_recording, plays_all_parties
from tests.support.recording import cancel, cli, wait_sealed
from tests.support.s3 import SeaweedS3, wait_archived
from tests.support.server import Participant, in_visit, running_server, visit_now


async def test_an_archived_visit_replays_and_exports_from_the_bucket(
        s3: SeaweedS3, tmp_path: Path) -> None:
    data = tmp_path / "data"
    bucket = s3.new_bucket("visits-archive")
    with running_server(data, VISITBRIDGE_SEGMENT_S="4", VISITBRIDGE_S3_ARCHIVE_INTERVAL_S="1",
                        **s3.server_env(bucket)) as server:
        visit = visit_now("rec-bucket")
        inmate = Participant(server, server.token("inmate-b", "inmate", visit, name="Jo Inmate"))
        family = Participant(server, server.token("family-b", "family", visit, name="Casey Kin"))
        async with in_visit(inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
            await asyncio.sleep(5)
            await cancel(server, "rec-bucket")
        await wait_sealed(server, "rec-bucket")
        record = await wait_archived(data, "rec-bucket")
        assert not (data / "recordings" / "rec-bucket").exists()
        assert {"manifest.jsonl", "final/inmate-b.webm", "final/family-b.webm"} \
            <= set(record["objects"])

        token = server.token("compliance-1", "compliance", None, name="Compliance One")
        async with chromium() as browser:
            page = await open_recording(browser, server, token, "rec-bucket")
            await plays_all_parties(page)

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/api/recordings/rec-bucket/export",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200, await resp.text()
                exported = await resp.read()
        out = tmp_path / "export"
        zipfile.ZipFile(io.BytesIO(exported)).extractall(out)
        ok = cli(server, "recordings", "verify", "--dir", str(out))
        assert ok.returncode == 0, ok.stdout + ok.stderr
