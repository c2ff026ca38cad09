"""A clock that moves only when the test moves it."""

from __future__ import annotations


class FakeClock:
    """Callable like ``time.time``; set or advance ``now`` to move time."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
