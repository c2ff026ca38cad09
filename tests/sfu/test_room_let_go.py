"""A room whose node lost the visit's lease acts on nothing more: no end, no record."""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu.peer import PeerSettings
from sfu.room import Room
from visit.lifecycle import Policy
from visit.room import RoomCore, RoomObserver, VisitInfo
from visit.roster import Identity, RosterError


class Ends(RoomObserver):
    def __init__(self) -> None:
        self.ended: str | None = None

    def visit_ended(self, room: RoomCore, cause: str, reason: str, at: float) -> None:
        self.ended = cause


async def test_a_room_let_go_writes_no_end_at_its_booked_end() -> None:
    """The lease is lost (as a node waking from a pause finds) before the booked end: the
    room's next action lets the visit go instead of ending it in the shared records."""
    now = time.time()
    visit = VisitInfo("let-go-1", int(now) - 60, int(now) + 1, False)
    records = Ends()
    closed: list[Room] = []
    held = True

    def holds(visit_id: str) -> bool:
        if not held:
            room.abandon("server_shutdown", "moved")  # what the node's gate does
        return held

    room = Room(visit, 4, PeerSettings(), Policy(warnings_s=()), records, closed.append,
                holds=holds)
    try:
        held = False
        await asyncio.sleep(2.5)  # past the booked end, and a tick of the room's clock
        assert records.ended is None
        assert room.abandoned and closed == [room]
        with pytest.raises(RosterError) as refused:
            await room.join(Identity("family-1", "F", "family"), None)  # type: ignore[arg-type]
        assert refused.value.code == "server_shutdown"
    finally:
        room.stop_clock()
