"""The SFU's live visits, one ``Room`` per visit id."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sfu import metrics
from sfu.peer import PeerSettings
from sfu.room import Room
from visit.lifecycle import Policy, VisitLifecycle
from visit.room import RoomObserver, VisitInfo
from visit.roster import RosterError
from visit.tap import TapFactory


@dataclass(eq=False)
class Rooms:
    """The live rooms, and what every new one is made with."""

    settings: PeerSettings
    max_visitors: int
    policy: Policy
    observer: RoomObserver
    tap_factory: TapFactory | None = None
    holds: Callable[[str], bool] | None = None  # nodes sharing visits: the lease is ours
    _rooms: dict[str, Room] = field(default_factory=dict, init=False, repr=False)

    def get(self, visit_id: str) -> Room | None:
        return self._rooms.get(visit_id)

    def open(self, visit: VisitInfo, stored: VisitInfo | None = None) -> Room:
        """The room of this visit, created on first join.

        A token may not change a visit's booking: all tokens of one visit must carry the
        same slot and privilege, or the later one is refused. The booking of the running
        room wins, and before it exists the ``stored`` one (the records store's, kept
        across a restart), so the first token after a restart cannot rebook the visit
        nor switch its recording off.
        """
        room = self._rooms.get(visit.id)
        booked = room.visit if room is not None else stored
        if booked is not None and booked != visit:
            raise RosterError("visit_mismatch",
                              "the token's booking differs from the visit's booking")
        if room is None:
            # Refuse before creating anything: a refused token must leave no room behind.
            VisitLifecycle(visit.starts_at, visit.ends_at, self.policy).check_join(time.time())
            room = Room(visit, self.max_visitors, self.settings, self.policy,
                        self.observer, self._closed, self.tap_factory, holds=self.holds)
            self._rooms[visit.id] = room
            metrics.VISITS.set(len(self._rooms))
            self.observer.visit_opened(room.core, time.time())
        return room

    def _closed(self, room: Room) -> None:
        if self._rooms.get(room.visit.id) is room:
            del self._rooms[room.visit.id]
            metrics.VISITS.set(len(self._rooms))
        room.stop_clock()

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))
