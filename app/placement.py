"""Which SFU worker serves which visit (plain logic, no I/O, clock passed in).

A visit lives whole on one worker: its media never crosses processes. A new visit goes
to the least loaded worker that is under the admission threshold; when every worker is
at the threshold the visit is refused (``server_full``) rather than squeezed in, so
overload never degrades visits already running. A visit keeps its worker until its
booked end (plus a grace), so rejoins land where the room is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ServerFull(Exception):
    code = "server_full"


@dataclass
class WorkerLoad:
    index: int
    participants: int = 0  # connected or being admitted


@dataclass
class Placement:
    workers: list[WorkerLoad]
    max_participants: int  # admission threshold per worker
    visit_size: int = 5  # a placed visit's members may always (re)join above the threshold
    grace_s: float = 300.0
    _visits: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (worker, until)

    @classmethod
    def of(cls, count: int, max_participants: int, visit_size: int) -> Placement:
        return cls([WorkerLoad(i) for i in range(count)], max_participants, visit_size)

    def worker_of(self, visit_id: str, now: float) -> int | None:
        placed = self._visits.get(visit_id)
        if placed is None or placed[1] < now:
            self._visits.pop(visit_id, None)
            return None
        return placed[0]

    def admit(self, visit_id: str, ends_at: float, now: float) -> int:
        """Reserve room for one participant of ``visit_id``; return its worker."""
        index = self.worker_of(visit_id, now)
        if index is None:
            open_workers = [w for w in self.workers if w.participants < self.max_participants]
            if not open_workers:
                raise ServerFull("every worker is at its admission threshold")
            index = min(open_workers, key=lambda w: (w.participants, w.index)).index
        elif self.workers[index].participants >= self.max_participants + self.visit_size:
            raise ServerFull("this visit's worker is full")
        self._visits[visit_id] = (index, max(ends_at, now) + self.grace_s)
        self.workers[index].participants += 1
        return index

    def release(self, index: int) -> None:
        self.workers[index].participants = max(0, self.workers[index].participants - 1)

    def load(self) -> list[int]:
        return [w.participants for w in self.workers]
