"""After a restart the stored booking wins over a token: no token can rebook a visit that
was already opened, nor switch its recording off, with a real server killed mid-visit."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

from records.dialect import open_database
from tests.support.postgres import server_database
from tests.support.server import (
    Participant,
    Server,
    in_visit,
    inmate_and_family,
    make_server,
    participants,
    start,
    stop,
    visit_now,
)


def segments(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("segment-*.webm")}


def stored(server: Server, visit: str) -> tuple[int, str]:
    db = open_database(server_database(server.data_dir))
    try:
        privileged, state = db.execute("SELECT privileged, state FROM visits WHERE id = ?",
                                       (visit,)).fetchone()
        refused = db.execute("SELECT count(*) FROM audit WHERE visit = ? AND action = 'join' "
                             "AND outcome = 'refused' AND reason = 'visit_mismatch'",
                             (visit,)).fetchone()[0]
    finally:
        db.close()
    return privileged, f"{state}, {refused} mismatch refusals"


async def test_after_a_crash_a_privileged_token_cannot_stop_the_recording(
        tmp_path: Path) -> None:
    server = start(make_server(tmp_path, VISITBRIDGE_SEGMENT_S="2"))
    visit = visit_now("restart-rec")
    try:
        async with in_visit(*inmate_and_family(server, visit, "r")) as (_, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()
        start(server)  # same data dir: the visit is still in its slot
        folder = tmp_path / "recordings" / "restart-rec"
        before = segments(folder)
        assert before, "the visit was recorded before the crash"

        rebooked = dataclasses.replace(visit, privileged=True)
        sneaky = Participant(server, server.token("family-r", "family", rebooked))
        async with participants(sneaky):
            reply = await sneaky.join()
        assert reply["type"] == "error" and reply["code"] == "visit_mismatch", reply
        moved = dataclasses.replace(visit, ends_at=visit.ends_at + 3600)
        longer = Participant(server, server.token("family-r", "family", moved))
        async with participants(longer):
            assert (await longer.join())["code"] == "visit_mismatch"

        restarted = time.time()
        async with in_visit(*inmate_and_family(server, visit, "r")) as (_, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 30, 15)
            await family.wait_for(lambda: any(
                p not in before and p.stat().st_mtime >= restarted and size > 0
                for p, size in segments(folder).items()), 15)
        assert stored(server, "restart-rec") == (0, "live, 2 mismatch refusals")
    finally:
        stop(server)
