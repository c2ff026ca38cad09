"""The SFU's live visits, one ``Room`` per visit id."""

from __future__ import annotations

from . import metrics
from .peer import PeerSettings
from .room import Room, VisitInfo
from .roster import RosterError


class Rooms:
    def __init__(self, settings: PeerSettings, max_visitors: int) -> None:
        self._settings = settings
        self._max_visitors = max_visitors
        self._rooms: dict[str, Room] = {}

    def get(self, visit_id: str) -> Room | None:
        return self._rooms.get(visit_id)

    def open(self, visit: VisitInfo) -> Room:
        """The room of this visit, created on first join.

        A token may not change a live visit's booking: all tokens of one visit must
        carry the same slot and privilege, or the later one is refused.
        """
        room = self._rooms.get(visit.id)
        if room is None:
            room = Room(visit, self._max_visitors, self._settings, self._closed)
            self._rooms[visit.id] = room
            metrics.VISITS.set(len(self._rooms))
        elif room.visit != visit:
            raise RosterError("visit_mismatch",
                              "the token's booking differs from the visit already running")
        return room

    def _closed(self, room: Room) -> None:
        if self._rooms.get(room.visit.id) is room:
            del self._rooms[room.visit.id]
            metrics.VISITS.set(len(self._rooms))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._rooms.values()))
