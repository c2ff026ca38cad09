"""`serve --workers 2`: a worker process dies in the middle of a visit.

Its pages are told (``server_shutdown``, close 4011: the page reconnects), the front
places nothing more on it, and the visit is placed again on the live worker when its
pages rejoin: media flows again and its recording goes on in the same chain.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp

from benchmarks.server import child_pids
from tests.support.server import (
    Participant,
    family_visit,
    in_visit,
    metric,
    running_server,
    visit_now,
)


def worker_pid(front_pid: int, index: int) -> int:
    for pid in child_pids(front_pid):
        with open(f"/proc/{pid}/environ", "rb") as f:
            if f"VISITBRIDGE_WORKER_INDEX={index}".encode() in f.read().split(b"\0"):
                return pid
    raise LookupError(f"no worker {index}")


async def test_a_dead_workers_visit_is_placed_again_and_new_visits_avoid_it(
        tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_WORKERS="2") as server:
        visit = visit_now("wd-1")
        async with family_visit(server, visit, "wd") as (inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 20)
            loads = [await metric(server, "visitbridge_worker_participants", f'index="{i}"')
                     for i in range(2)]
            held = loads.index(2)
            assert server.process is not None
            os.kill(worker_pid(server.process.pid, held), signal.SIGKILL)
            for p in (inmate, family):
                await p.wait_for(lambda p=p: p.close_code is not None, 10)
                assert (p.error or {}).get("code") == "server_shutdown", p.events[-3:]
                assert p.close_code == 4011

        # The pages rejoin with their links: the visit is placed on the live worker.
        async with family_visit(server, visit, "wd") as (inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 20)
            await inmate.wait_for(lambda: inmate.video_from(1).frames >= 10, 20)
            # Recording goes on: every track is recorded again, and the visit lives on.
            await inmate.wait_for(lambda: sum(e["type"] == "recording"
                                              for e in inmate.events) >= 4, 10)
            assert not [e for e in inmate.events if e["type"] == "ended"]
            assert await metric(server, "visitbridge_worker_participants",
                                f'index="{1 - held}"') == 2
            # A new visit goes to the live worker too.
            other = Participant(server, server.token("inmate-wd2", "inmate",
                                                     visit_now("wd-2")))
            async with in_visit(other):
                assert await metric(server, "visitbridge_worker_participants",
                                    f'index="{1 - held}"') == 3
        assert await metric(server, "visitbridge_worker_deaths_total") == 1
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["workers_down"] == [held]
        assert "Traceback" not in server.log_text()
