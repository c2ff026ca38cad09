"""A recorded visit the family joined first, found by the inmate, with one length.

Real server, real aiortc participants: the family member's media opens the recording
before the inmate has joined, which is when the index used to miss the inmate.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import av

from auth.tokens import VisitClaim
from tests.support.compliance import call, compliance_token
from tests.support.recording import wait_sealed
from tests.support.server import Participant, Server, participants, running_server
from tests.support.server_records import server_rows

VISIT = "inmate-late"


def index_row(server: Server) -> dict[str, Any] | None:
    rows = server_rows(server.data_dir, "SELECT * FROM recordings WHERE visit = ?", (VISIT,))
    return dict(rows[0]) if rows else None


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def file_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        assert container.duration is not None
        return container.duration / av.time_base


async def test_search_by_inmate_finds_a_visit_the_family_joined_first(tmp_path: Path) -> None:
    now = int(time.time())
    # Booked 20 s ago: nobody was recorded in those 20 s, so they are not in the length.
    visit = VisitClaim(id=VISIT, starts_at=now - 20, ends_at=now + 1800)
    with running_server(tmp_path / "data", VISITBRIDGE_SEGMENT_S="4") as server:
        family = Participant(server, server.token("family-9", "family", visit,
                                                  name="Casey Reyes"), colour=(30, 30, 200))
        inmate = Participant(server, server.token("inmate-41", "inmate", visit,
                                                  name="Jordan Reyes"), colour=(200, 30, 30))
        token = compliance_token(server)
        async with participants(family, inmate):
            assert (await family.join())["type"] == "joined"
            # The family's media opened the recording: the inmate is not in it yet.
            await until(lambda: index_row(server) is not None, 15, "the recording to open")
            assert index_row(server)["inmate"] is None  # type: ignore[index]
            await asyncio.sleep(1.5)
            assert (await inmate.join())["type"] == "joined"
            await family.wait_for(lambda: any(r.frames >= 30 for r in family.video.values()),
                                  20)
            for query in ("inmate=jordan", "inmate=INMATE-41", "inmate=reyes&visitor=casey"):
                status, body, _ = await call(server, "GET", f"/api/recordings?{query}", token)
                assert status == 200, body
                assert [r["visit"] for r in body["recordings"]] == [VISIT], (query, body)
            found = body["recordings"][0]
            assert (found["inmate"], found["inmate_name"]) == ("inmate-41", "Jordan Reyes")
            assert found["visitors"] == [{"sub": "family-9", "name": "Casey Reyes"}]
            records = server.token("records-1", "records", None)
            status, body, _ = await call(server, "POST", f"/api/visits/{VISIT}/cancel", records)
            assert status == 200, body
        await wait_sealed(server, VISIT)

        # One length: the list's is the replay timeline's, from the first recorded media
        # to the last (each final file placed at its offset), not from the booked start.
        status, body, _ = await call(server, "GET", f"/api/recordings/{VISIT}", token)
        assert status == 200, body
        folder = server.data_dir / "recordings" / VISIT
        files = {f["participant"]: (f["offset_s"], file_seconds(
            folder / "final" / f"{f['participant']}.webm")) for f in body["finals"]}
        assert files["inmate-41"][0] - files["family-9"][0] > 1, files  # joined later
        spans = files.values()
        timeline = max(o + s for o, s in spans) - min(o for o, _ in spans)
        assert abs(body["seconds"] - timeline) < 0.5, (body["seconds"], files)
        assert body["seconds"] < time.time() - visit.starts_at - 15, body["seconds"]
        status, listed, _ = await call(server, "GET", f"/api/recordings?visit={VISIT}", token)
        assert listed["recordings"][0]["seconds"] == body["seconds"]
