"""A real recorded visit, replayed in Chromium by compliance, exported and verified offline."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests.support.browser import chromium, open_page, plays_all_parties
from tests.support.exports import flip_middle
from tests.support.recording import cli, export_to, record_visit
from tests.support.server import Server, running_server


async def verify_each(server: Server, *verifies: tuple[str, ...]
               ) -> list[subprocess.CompletedProcess[str]]:
    """``visitbridge recordings verify`` with each set of arguments, side by side."""
    return list(await asyncio.gather(*(
        asyncio.to_thread(cli, server, "recordings", "verify", *args) for args in verifies)))


async def test_compliance_replays_a_real_recording_and_its_export_verifies(
        tmp_path: Path) -> None:
    # Segments of 2 s: a recording of over 3 s spans two or more of each track.
    with running_server(tmp_path / "data", VISITBRIDGE_SEGMENT_S="2") as server:
        await record_visit(server, "rec-replay", "r", seconds=3)

        token = server.token("compliance-1", "compliance", None, name="Compliance One")
        async with chromium() as browser:
            page = await open_page(browser, f"{server.url}/compliance#token={token}")
            await page.get_by_label("Visit ID").fill("rec-replay")
            await page.get_by_role("button", name="Search").click()
            await page.get_by_role("button", name="Open recording of visit rec-replay").click()
            await plays_all_parties(page)

        # The export verifies offline, with the CLI, without the server's database; and
        # the server's copy verifies. Then a byte flipped in each is reported. (The two
        # checks touch different files: their CLI processes run side by side.)
        out = tmp_path / "export"
        await export_to(server, token, "rec-replay", out)
        ok, intact = await verify_each(server, ("--dir", str(out)), ("rec-replay",))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert intact.returncode == 0, intact.stdout + intact.stderr
        segment = sorted(out.rglob("segment-*.webm"))[0]
        flip_middle(segment)
        original = sorted((tmp_path / "data" / "recordings" / "rec-replay").rglob(
            "segment-*.webm"))[0]
        raw = bytearray(original.read_bytes())
        raw[-10] ^= 0xFF
        original.write_bytes(bytes(raw))
        bad, tampered = await verify_each(server, ("--dir", str(out)), ("rec-replay",))
        assert bad.returncode == 1 and segment.name in bad.stdout + bad.stderr
        assert tampered.returncode == 1, tampered.stdout
