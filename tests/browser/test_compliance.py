"""A real recorded visit, replayed in Chromium by compliance, exported and verified offline."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import aiohttp

from tests.support.browser import chromium, open_page, plays_all_parties
from tests.support.recording import cli, wait_sealed
from tests.support.server import Participant, in_visit, running_server, visit_now


async def test_compliance_replays_a_real_recording_and_its_export_verifies(
        tmp_path: Path) -> None:
    with running_server(tmp_path / "data", VISITBRIDGE_SEGMENT_S="4") as server:
        visit = visit_now("rec-replay")
        inmate = Participant(server, server.token("inmate-r", "inmate", visit, name="Jo Inmate"))
        family = Participant(server, server.token("family-r", "family", visit, name="Casey Kin"))
        async with in_visit(inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
            await asyncio.sleep(6)
            records = server.token("records-1", "records", None)
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{server.url}/api/visits/rec-replay/cancel",
                                     headers={"Authorization": f"Bearer {records}"}) as resp:
                    assert resp.status == 200
        await wait_sealed(server, "rec-replay")

        token = server.token("compliance-1", "compliance", None, name="Compliance One")
        async with chromium() as browser:
            page = await open_page(browser, f"{server.url}/compliance#token={token}")
            await page.get_by_label("Visit ID").fill("rec-replay")
            await page.get_by_role("button", name="Search").click()
            await page.get_by_role("button", name="Open recording of visit rec-replay").click()
            await plays_all_parties(page)

        # The export verifies offline, with the CLI, without the server's database.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/api/recordings/rec-replay/export",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
                data = await resp.read()
        out = tmp_path / "export"
        zipfile.ZipFile(io.BytesIO(data)).extractall(out)
        ok = cli(server, "recordings", "verify", "--dir", str(out))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        segment = sorted(out.rglob("segment-*.webm"))[0]
        raw = bytearray(segment.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        segment.write_bytes(bytes(raw))
        bad = cli(server, "recordings", "verify", "--dir", str(out))
        assert bad.returncode == 1 and segment.name in bad.stdout + bad.stderr

        # The server's copy: intact verifies; a flipped byte is reported.
        assert cli(server, "recordings", "verify", "rec-replay").returncode == 0
        original = sorted((tmp_path / "data" / "recordings" / "rec-replay").rglob(
            "segment-*.webm"))[0]
        raw = bytearray(original.read_bytes())
        raw[-10] ^= 0xFF
        original.write_bytes(bytes(raw))
        tampered = cli(server, "recordings", "verify", "rec-replay")
        assert tampered.returncode == 1, tampered.stdout
