"""A page that stops reading its WebSocket cannot hold up its visit.

Every message to a page only queues; a page whose queue or socket stays full is cut off
within seconds, and revocation, an officer's end and the slot end reach everyone else
at once, with a real server, real aiortc participants and a raw-socket page that floods
the server with messages whose error replies it never reads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from auth.tokens import VisitClaim
from tests.support.server import (
    Participant,
    Server,
    family_visit,
    in_visit,
    module_server,
    visit_now,
)
from tests.support.stalled import StalledPage

pytestmark = pytest.mark.solo  # answers within a deadline

FLOOD = (60_000, 10)  # about 6 MB of short error replies the page never reads
DEADLINE_S = 2.0  # what a revoke or an end may take for everyone else

server = module_server("stalled")  # each test has visits of its own


async def post(server: Server, path: str, role: str = "officer") -> tuple[int, float]:
    """POST as an officer (or the records system); the status and the seconds it took."""
    token = server.token(f"{role}-7", role, None)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, http.post(
            server.url + path, headers={"Authorization": f"Bearer {token}"},
            json={"reason": "test"}) as resp:
        return resp.status, time.monotonic() - started


async def seen(p: Participant, predicate: Any, timeout: float) -> float:
    """Seconds until ``p`` received an event matching ``predicate``."""
    started = time.monotonic()
    await p.wait_for(lambda: any(predicate(e) for e in p.events), timeout)
    return time.monotonic() - started


async def stalled_page(server: Server, visit: VisitClaim) -> StalledPage:
    page = StalledPage(server, server.token("family-stalled", "family", visit))
    await asyncio.to_thread(page.join)
    return page


def stalled_left(e: dict[str, Any]) -> bool:
    """The stalled page was cut off: the others see it reconnecting (its seat kept)."""
    return (e["type"] == "participant_updated" and e["participant"]["id"] == "family-stalled"
            and e["participant"]["reconnecting"])


async def test_revoke_and_officer_end_do_not_wait_for_a_page_that_stopped_reading(
        server: Server) -> None:
    visit = visit_now("stall-1")
    async with family_visit(server, visit, "s1") as (inmate, family):
        stalled = await stalled_page(server, visit)
        await seen(inmate, lambda e: e["type"] == "participant_joined"
                   and e["participant"]["id"] == "family-stalled", 10)
        await asyncio.to_thread(stalled.flood, *FLOOD)
        flooded = time.monotonic()

        status, took = await post(
            server, "/api/visits/stall-1/participants/family-s1/revoke", "records")
        assert status == 200 and took < DEADLINE_S, took
        await family.wait_for(lambda: family.close_code == 4004, DEADLINE_S)

        # The stalled page is cut off within seconds, and everyone hears of it.
        await seen(inmate, stalled_left, 15)
        assert time.monotonic() - flooded < 15

        status, took = await post(server, "/api/visits/stall-1/end")
        assert status == 200 and took < DEADLINE_S, took
        await seen(inmate, lambda e: e["type"] == "ended", DEADLINE_S)
    stalled.close()
    assert "Traceback" not in server.log_text()


async def test_officer_end_and_slot_end_reach_everyone_while_a_page_is_stalled(
        server: Server) -> None:
    now = int(time.time())
    slot = VisitClaim(id="stall-2", starts_at=now - 60, ends_at=now + 7)
    ended = visit_now("stall-3")
    inmate = Participant(server, server.token("inmate-s2", "inmate", slot))
    other = Participant(server, server.token("inmate-s3", "inmate", ended))
    async with in_visit(inmate, other):
        stalled = await stalled_page(server, slot)
        stalled_too = await stalled_page(server, ended)
        await seen(other, lambda e: e["type"] == "participant_joined", 10)

        # Officer end while the page's replies pile up.
        await asyncio.to_thread(stalled_too.flood, *FLOOD)
        status, took = await post(server, "/api/visits/stall-3/end")
        assert status == 200 and took < DEADLINE_S, took
        await seen(other, lambda e: e["type"] == "ended", DEADLINE_S)

        # Slot end while the other page's replies pile up.
        await asyncio.sleep(max(0.0, slot.ends_at - 2 - time.time()))
        assert slot.ends_at - time.time() > 1.5, "the slot ends before the page stalls"
        await asyncio.to_thread(stalled.flood, *FLOOD)
        await inmate.wait_for(lambda: any(e["type"] == "ended" for e in inmate.events),
                              slot.ends_at + DEADLINE_S - time.time())
        ended_event = next(e for e in inmate.events if e["type"] == "ended")
        assert ended_event["cause"] == "slot_ended"
    stalled.close()
    stalled_too.close()
