"""SIGKILL during a live recorded visit, restart, rejoin inside the slot.

The families come back to the same tiles, the recording goes on in the same signed
chain (one manifest, verified), and the minutes lost while the server was down are
counted and written to the audit log, so a reviewer sees the gap and why.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp

from auth.tokens import VisitClaim
from tests.support.recording import cli, wait_sealed
from tests.support.server import in_visit, inmate_and_family, make_server, start, stop
from tests.support.server_records import server_rows

DOWN_S = 1.5  # the server stays dead at least this long: the gap is no shorter


def audit_rows(data_dir: Path, action: str) -> list[dict[str, object]]:
    return [dict(r) for r in server_rows(data_dir, "SELECT * FROM audit WHERE action = ?",
                                         (action,))]


async def test_rejoin_after_a_crash_continues_the_same_chain_with_the_gap_audited(
        tmp_path: Path) -> None:
    server = start(make_server(tmp_path, VISITBRIDGE_SEGMENT_S="4"))
    now = int(time.time())
    visit = VisitClaim(id="rec-restart", starts_at=now - 2, ends_at=now + 60)
    try:
        inmate, family = inmate_and_family(server, visit, "rs")
        async with in_visit(inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 30, 15)
            slots = {p: p.events[0]["you"]["slot"] for p in (inmate, family)}
            await asyncio.sleep(1)  # two recorder batches of each track written
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            killed_at = time.time()
            server.process.wait()
        await asyncio.sleep(DOWN_S)
        start(server)  # same data dir and port
        back = inmate_and_family(server, visit, "rs")
        async with in_visit(*back):
            assert [p.events[0]["you"]["slot"] for p in back] == list(slots.values())
            await back[1].wait_for(lambda: back[1].video_from(0).frames >= 30, 20)
            rejoined_at = time.time()
            await asyncio.sleep(1)  # recorded after the gap, in the same chain
        async with aiohttp.ClientSession() as http, http.post(
                f"{server.url}/api/visits/rec-restart/end",
                headers={"Authorization": "Bearer " + server.token("officer-1", "officer",
                                                                   None)},
                json={"reason": "done"}) as resp:
            assert resp.status in (200, 409), await resp.text()
        await wait_sealed(server, "rec-restart")
        folder = tmp_path / "recordings" / "rec-restart"
        manifests = list(folder.glob("manifest*.jsonl"))
        assert [m.name for m in manifests] == ["manifest.jsonl"]  # one chain
        result = cli(server, "recordings", "verify", "rec-restart")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = [json.loads(line) for line in manifests[0].read_text().splitlines()]
        assert any(entry.get("type") == "recovered" for entry in lines)
        gaps = audit_rows(tmp_path, "recording_resumed")
        assert len(gaps) == 1, gaps
        detail = json.loads(str(gaps[0]["detail"]))
        down = rejoined_at - killed_at
        assert DOWN_S <= detail["gap_s"] <= down + 2, (detail, down)
    finally:
        stop(server)
