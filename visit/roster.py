"""Who is in a visit and in which slot (plain logic, no I/O).

Slot 0 is the inmate's; visitors take slots 1..max_visitors. A participant who comes
back gets their previous slot when it is free, so every other page keeps their tile.
A second connection with the same identity replaces the first instead of taking a slot.
"""

from __future__ import annotations

from visit.messages import Refusal
from visit.value import value

VISITOR_ROLES = frozenset({"family", "attorney"})


class RosterError(Refusal):
    """A join or message the roster does not allow (full visit, wrong role, stray answer)."""


@value
class Identity:
    sub: str
    name: str
    role: str


@value
class Admission:
    slot: int
    replaces: bool  # an earlier connection of the same identity must be closed


class Roster:
    def __init__(self, max_visitors: int) -> None:
        self.max_visitors = max_visitors
        self._present: dict[str, int] = {}  # sub -> slot, connected now
        self._previous: dict[str, int] = {}  # sub -> last slot, for rejoin

    @property
    def slots(self) -> int:
        return self.max_visitors + 1

    def slot_of(self, sub: str) -> int | None:
        return self._present.get(sub)

    def admit(self, who: Identity) -> Admission:
        if who.sub in self._present:
            return Admission(self._present[who.sub], replaces=True)
        taken = set(self._present.values())
        if who.role == "inmate":
            if 0 in taken:
                raise RosterError("visit_full", "another inmate is already in this visit")
            slot = 0
        elif who.role in VISITOR_ROLES:
            free = [s for s in range(1, self.slots) if s not in taken]
            if not free:
                raise RosterError(
                    "visit_full", f"this visit already has {self.max_visitors} visitors")
            previous = self._previous.get(who.sub)
            slot = previous if previous in free else free[0]
        else:
            raise RosterError("wrong_role", f"role {who.role!r} cannot take part in a visit")
        self._present[who.sub] = slot
        self._previous[who.sub] = slot
        return Admission(slot, replaces=False)

    def release(self, sub: str) -> None:
        self._present.pop(sub, None)

    def __len__(self) -> int:
        return len(self._present)
