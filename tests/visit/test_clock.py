"""The visit's clock: a jump of the system clock does not move it."""

from __future__ import annotations

from visit.clock import SteadyClock


def test_the_steady_clock_ignores_jumps_and_follows_elapsed_time() -> None:
    mono = [100.0]
    wall = [1_800_000_000.0]
    clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    assert clock() == 1_800_000_000.0
    wall[0] += 3600  # set an hour ahead
    mono[0] += 2
    assert clock() == 1_800_000_002.0
    wall[0] -= 7200  # and back
    mono[0] += 3
    assert clock() == 1_800_000_005.0
