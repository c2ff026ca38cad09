"""A room's timers and end follow the booking, not a jump of the system clock."""

from __future__ import annotations

import asyncio
import time

from sfu.peer import PeerSettings
from sfu.room import Room
from visit.clock import SteadyClock
from visit.lifecycle import Policy
from visit.room import RoomCore, RoomObserver, VisitInfo


class Wall:
    """A system clock an operator can set by hand."""

    def __init__(self) -> None:
        self.jump = 0.0

    def __call__(self) -> float:
        return time.time() + self.jump


class Ends(RoomObserver):
    """The records side, as far as this test needs it: when and why the visit ended."""

    def __init__(self) -> None:
        self.ended: tuple[str, float] | None = None

    def visit_ended(self, room: RoomCore, cause: str, reason: str, at: float) -> None:
        self.ended = (cause, time.monotonic())


async def test_a_room_ends_at_its_booked_end_whatever_the_system_clock_does() -> None:
    wall = Wall()
    now = time.time()
    visit = VisitInfo("clock-1", int(now) - 60, int(now) + 3, False)
    records = Ends()
    room = Room(visit, 4, PeerSettings(), Policy(warnings_s=()), records, lambda r: None,
                clock=SteadyClock(wall))
    started = time.monotonic()
    try:
        wall.jump = 3600.0  # an hour ahead: a naive clock would end the visit now
        await asyncio.sleep(1.2)
        assert records.ended is None
        wall.jump = -3600.0  # an hour back: a naive clock would keep it open
        while records.ended is None and time.monotonic() - started < 10:
            await asyncio.sleep(0.05)
        assert records.ended is not None
        cause, at = records.ended
        assert cause == "slot_ended"
        assert visit.ends_at - now - 1.5 <= at - started <= visit.ends_at - now + 1.5
    finally:
        room.stop_clock()
