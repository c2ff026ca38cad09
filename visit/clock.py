"""The clock a visit keeps: wall-clock time that a jump of the system clock cannot move.

Bookings are wall-clock times, but an operator setting the date by hand, or a virtual
machine resumed from a snapshot, can move ``time.time()`` by hours in one step: read
naively, that ends a visit early or keeps it open past its slot. A ``SteadyClock`` reads
the wall clock once and then advances by the monotonic clock only, so the media gate,
the warnings and the end follow the booking as the process measured it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def __call__(self) -> float:
        return self._offset + self._monotonic()


STEADY = SteadyClock()  # anchored when the process starts
