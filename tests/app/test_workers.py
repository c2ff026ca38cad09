"""`serve --workers 2`: visits are placed whole on workers; overload is refused, not squeezed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from tests.support.server import Participant, metric, participants, running_server, visit_now

pytestmark = pytest.mark.solo  # real media on two workers, placed by their load


async def test_two_workers_place_visits_and_refuse_beyond_capacity(tmp_path: Path) -> None:
    # Two workers admitting 4 participants each: 4 two-party visits fit, a fifth does not.
    with running_server(tmp_path, VISITBRIDGE_WORKERS="2",
                        VISITBRIDGE_WORKER_MAX_PARTICIPANTS="4") as server:
        people = []
        for i in range(5):
            visit = visit_now(f"w-{i}")
            people.append([Participant(server, server.token(f"{r}-{i}", r, visit),
                                       colour=(40 * i, 200, 30)) for r in ("inmate", "family")])
        flat = [p for pair in people for p in pair]
        async with participants(*flat):
            for pair in people[:4]:
                for p in pair:
                    assert (await p.join())["type"] == "joined"
            refused = await people[4][0].join()
            assert refused["code"] == "server_full"
            assert people[4][0].close_code == 4014
            # Every admitted visit has two-way media.
            for pair in people[:4]:
                await pair[1].wait_for(lambda p=pair[1]: p.video_from(0).frames >= 10, 20)
                await pair[0].wait_for(lambda p=pair[0]: p.video_from(1).frames >= 10, 20)
            # A rejoin of a placed visit is not refused even though the server is full.
            await pair[1].close()
            back = Participant(server, pair[1].token)
            async with participants(back):
                assert (await back.join())["type"] == "joined"
                await back.wait_for(lambda: back.video_from(0).frames >= 5, 20)
            # Visits were spread over both workers, each visit whole on one.
            assert await metric(server, "visitbridge_worker_participants", 'index="0"') >= 3
            assert await metric(server, "visitbridge_worker_participants", 'index="1"') >= 3
            assert await metric(server, "visitbridge_server_full_refusals_total") == 1
            # Each worker is a scrape target of its own, on the port after the front's:
            # both forwarded media, and the front serves only its own metrics.
            workers = [replace(server, port=server.port + 1 + i) for i in range(2)]
            for worker in workers:
                assert await metric(worker, "visitbridge_forwarded_packets_total") > 0
                assert await metric(worker, "visitbridge_codec_instances_total") == 0
                assert await metric(worker, "process_start_time_seconds") > 0
            async with aiohttp.ClientSession() as http, http.get(
                    f"{server.url}/metrics") as resp:
                front = await resp.text()
            assert "process_start_time_seconds" in front
            assert "visitbridge_forwarded_packets" not in front
            assert "visitbridge_recordings_free_bytes" not in front  # not a false 0
            # The officer's list gathers every worker's visits.
            officer = server.token("officer-w", "officer", None)
            async with aiohttp.ClientSession() as http, http.get(
                    f"{server.url}/api/visits",
                    headers={"Authorization": f"Bearer {officer}"}) as resp:
                listed = {v["id"] for v in (await resp.json())["visits"]}
            assert {f"w-{i}" for i in range(4)} <= listed
            await asyncio.sleep(0)
