"""The connected-time ledger with a real server and real aiortc participants: a
participant whose camera and microphone stop sending, while its peer and WebSocket stay
up, is shown ``lost`` to the others and is not billed for that time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.server import Participant, in_visit, inmate_and_family, running_server, visit_now

pytestmark = pytest.mark.solo  # shares of the worker's time

PAUSE_S = 3.0  # twice the tolerance of the check: a billed pause fails it


def quality_of(p: Participant, sub: str) -> list[str]:
    return [e["level"] for e in p.events if e["type"] == "quality" and e["participant"] == sub]


def send_media(p: Participant, on: bool) -> None:
    """Stop or restart what ``p`` publishes: RTP stops, RTCP and the socket go on."""
    assert p.pc is not None
    for sender in p.pc.getSenders():
        if sender.track is not None:
            sender._enabled = on  # aiortc reads its track but sends nothing while False


async def test_time_without_media_is_not_billed(tmp_path: Path) -> None:
    with running_server(tmp_path / "server", VISITBRIDGE_MEDIA_IDLE_S="1") as server:
        visit = visit_now("ledger-pause-1")
        inmate, family = inmate_and_family(server, visit, "lp")
        async with in_visit(inmate, family):
            await inmate.wait_for(lambda: inmate.video_from(1).frames >= 10, 20)
            family_up = time.time()
            send_media(family, False)
            await inmate.wait_for(lambda: quality_of(inmate, "family-lp") == ["lost"], 5)
            await asyncio.sleep(PAUSE_S - (time.time() - family_up))
            send_media(family, True)
            await inmate.wait_for(lambda: quality_of(inmate, "family-lp") == ["lost", "good"], 5)
            assert family.close_code is None  # never dropped: only its media stopped
            await asyncio.sleep(2.0)
            token = server.token("records-lp", "records", None)
            async with aiohttp.ClientSession() as http, http.get(
                    f"{server.url}/api/visits/ledger-pause-1",
                    headers={"Authorization": f"Bearer {token}"}) as resp:
                body = await resp.json()
            asked = time.time()
        seconds = {p["id"]: p["seconds_connected"] for p in body["participants"]}
        # Connected since before family_up; billed for all of it but the pause.
        assert seconds["family-lp"] == pytest.approx(
            seconds["inmate-lp"] - PAUSE_S, abs=1.5), (seconds, asked - family_up)
