"""Which SFU worker serves which visit (plain logic, no I/O, clock passed in).

A visit lives whole on one worker: its media never crosses processes. A new visit goes
to the least loaded worker that is under the admission threshold; when every worker is
at the threshold the visit is refused (``server_full``) rather than squeezed in, so
overload never degrades visits already running. A visit keeps its worker until its
booked end (plus a grace), so rejoins land where the room is.

Only a verified token's visit may be placed (the front checks its signature first): a
forged booked end could otherwise move a running visit to a second worker, and a forged
far-off end could grow the table without bound. The table is also capped
(``max_visits``): a new visit beyond it is refused rather than remembered.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


class ServerFull(Exception):
    code = "server_full"


@dataclass
class WorkerLoad:
    index: int
    participants: int = 0  # connected or being admitted
    down: bool = False  # its process died: nothing is placed on it any more


@dataclass
class Placement:
    workers: list[WorkerLoad]
    max_participants: int  # admission threshold per worker
    visit_size: int = 5  # a placed visit's members may always (re)join above the threshold
    max_visits: int = 10_000  # placements held at once (each until its visit's booked end)
    grace_s: float = 300.0
    _visits: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (worker, until)
    _expiry: list[tuple[float, str]] = field(default_factory=list)  # heap of (until, id)

    @classmethod
    def of(cls, count: int, max_participants: int, visit_size: int,
           max_visits: int) -> Placement:
        return cls([WorkerLoad(i) for i in range(count)], max_participants, visit_size,
                   max_visits)

    def worker_of(self, visit_id: str, now: float) -> int | None:
        self._expire(now)
        placed = self._visits.get(visit_id)
        return placed[0] if placed is not None else None

    def count(self, now: float) -> int:
        """Visits placed now (expired placements are dropped first)."""
        self._expire(now)
        return len(self._visits)

    def admit(self, visit_id: str, ends_at: float, now: float) -> int:
        """Reserve room for one participant of ``visit_id``, booked to end at ``ends_at``
        (both from a verified token); return its worker."""
        index = self.worker_of(visit_id, now)
        if index is None:
            if len(self._visits) >= self.max_visits:
                raise ServerFull("the placement table is full")
            open_workers = [w for w in self.workers
                            if not w.down and w.participants < self.max_participants]
            if not open_workers:
                raise ServerFull("every worker is at its admission threshold")
            index = min(open_workers, key=lambda w: (w.participants, w.index)).index
            until = max(ends_at, now) + self.grace_s
        else:
            if self.workers[index].participants >= self.max_participants + self.visit_size:
                raise ServerFull("this visit's worker is full")
            # A placement only ever grows: no token can cut a running visit loose.
            until = max(self._visits[visit_id][1], ends_at + self.grace_s)
        if self._visits.get(visit_id) != (index, until):
            self._visits[visit_id] = (index, until)
            heapq.heappush(self._expiry, (until, visit_id))
        self.workers[index].participants += 1
        return index

    def worker_down(self, index: int) -> list[str]:
        """The worker's process died: forget its visits (a rejoin places them again, on a
        live worker) and place nothing more on it. Returns the visits it held."""
        worker = self.workers[index]
        worker.down, worker.participants = True, 0
        lost = [v for v, (i, _) in self._visits.items() if i == index]
        for visit_id in lost:
            del self._visits[visit_id]
        return lost

    def release(self, index: int) -> None:
        self.workers[index].participants = max(0, self.workers[index].participants - 1)

    def load(self) -> list[int]:
        return [w.participants for w in self.workers]

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            until, visit_id = heapq.heappop(self._expiry)
            placed = self._visits.get(visit_id)
            if placed is not None and placed[1] == until:  # not since extended
                del self._visits[visit_id]
