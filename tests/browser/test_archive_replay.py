"""A real recorded visit, archived to the S3 bucket, replayed from there in Chromium, and
exported from there into a package that verifies offline."""

from __future__ import annotations

from pathlib import Path

from tests.support.browser import chromium, open_recording, plays_all_parties
from tests.support.recording import cli, export_to, record_visit
from tests.support.s3 import SeaweedS3, wait_archived
from tests.support.server import running_server


async def test_an_archived_visit_replays_and_exports_from_the_bucket(
        s3: SeaweedS3, tmp_path: Path) -> None:
    data = tmp_path / "data"
    bucket = s3.new_bucket("visits-archive")
    # Segments of 2 s: a recording of over 3 s spans two or more of each track.
    with running_server(data, VISITBRIDGE_SEGMENT_S="2", VISITBRIDGE_S3_ARCHIVE_INTERVAL_S="1",
                        **s3.server_env(bucket)) as server:
        await record_visit(server, "rec-bucket", "b", seconds=3)
        record = await wait_archived(data, "rec-bucket")
        assert not (data / "recordings" / "rec-bucket").exists()
        assert {"manifest.jsonl", "final/inmate-b.webm", "final/family-b.webm"} \
            <= set(record["objects"])

        token = server.token("compliance-1", "compliance", None, name="Compliance One")
        async with chromium() as browser:
            page = await open_recording(browser, server, token, "rec-bucket")
            await plays_all_parties(page)

        out = tmp_path / "export"
        await export_to(server, token, "rec-bucket", out)
        ok = cli(server, "recordings", "verify", "--dir", str(out))
        assert ok.returncode == 0, ok.stdout + ok.stderr
