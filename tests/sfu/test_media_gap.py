"""Media that stops and comes back on the same connection is one audited gap.

Real aiortc participants on a real server: the family's network goes silent for a few
seconds, shorter than the watchdog's timeout, so its peer connection survives and no
drop is audited; the server still saw nobody's media for that long, and the audit log
says when it stopped and when it came back.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.audit import audit
from tests.support.server import Server, family_visit, module_server, visit_now
from tests.support.silence import go_silent

pytestmark = pytest.mark.solo  # a silence's measured length

server = module_server("media-gap", VISITBRIDGE_MEDIA_IDLE_S="1",
                       VISITBRIDGE_MEDIA_TIMEOUT_S="8")
SILENT_S = 3.0


async def test_a_silence_on_the_same_connection_is_one_gap_with_its_times(
        server: Server) -> None:
    async with family_visit(server, visit_now("gap-1"), "gap") as (inmate, family):
        await inmate.wait_for(lambda: inmate.video_from(1).frames >= 20, 20)
        restore = go_silent(family)
        silent_at = time.time()
        await asyncio.sleep(SILENT_S)
        restore()
        restored_at = time.time()
        frames = inmate.video_from(1).frames
        await inmate.wait_for(lambda: inmate.video_from(1).frames > frames + 10, 10)
        await asyncio.sleep(1.5)  # the room's next tick sees the media again
        rows = [r for r in audit(server, "gap-1") if r["actor"] == "family-gap"]
        assert family.error is None  # never told to reconnect
    assert [r["action"] for r in rows if r["action"].startswith("connection_")] == []
    gaps = [r["detail"] for r in rows if r["action"] == "media_gap"]
    assert len(gaps) == 1, rows
    assert silent_at - 1 < gaps[0]["start"] < silent_at + 0.5
    assert restored_at - 0.5 < gaps[0]["end"] < restored_at + 2.5
    assert SILENT_S - 1 < gaps[0]["gap_s"] < SILENT_S + 3
