"""When a participant's media stopped and came back: the gaps the audit log keeps (no
I/O, clock passed in).

The server learns that media stopped in ways that overlap: the RTP idle check on a
connection that stays up, the watchdog or a closed socket dropping the connection, a
page that rejoins from a new address while its old connection still looks up. One
outage must be one audited gap whichever of these saw it, so gaps are kept per
participant, not per connection: the first report opens the gap at the earliest time
media was known to have stopped, the first media on any connection of theirs closes it.
"""

from __future__ import annotations

from visit.value import value


@value
class Gap:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class GapTracker:
    """Open gaps by participant; a gap shorter than ``min_s`` is not worth an audit row
    (a socket that blinks while media keeps flowing)."""

    def __init__(self, min_s: float) -> None:
        self.min_s = min_s
        self._open: dict[str, float] = {}

    def stopped(self, sub: str, since: float) -> None:
        """No media of ``sub``'s since ``since``; an open gap keeps its earlier start."""
        self._open[sub] = min(self._open.get(sub, since), since)

    def resumed(self, sub: str, at: float) -> Gap | None:
        """``sub``'s media arrives again at ``at``: the gap it closes, if one worth
        auditing was open."""
        start = self._open.pop(sub, None)
        if start is None or at - start < self.min_s:
            return None
        return Gap(start, at)

    def forget(self, sub: str) -> None:
        """``sub`` left for good: a gap that never closed is no media gap but a departure."""
        self._open.pop(sub, None)
