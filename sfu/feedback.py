"""RTCP feedback decisions for one published video track (no I/O, clock passed in).

Subscribers' keyframe requests are relayed to the publisher, but a burst of them (every
subscriber asks after a switch) must not make the publisher send keyframe after
keyframe. For audio, the worst loss subscribers report goes into the server's receiver
reports to the publisher, so its Opus encoder adds in-band FEC for loss it would
otherwise never hear of.
"""

from __future__ import annotations


class KeyframeRequests:
    """Rate limits keyframe requests to one publisher."""

    def __init__(self, min_interval_s: float = 0.3) -> None:
        self._min_interval = min_interval_s
        self._last: float | None = None
        self.relayed = 0
        self.suppressed = 0

    def should_relay(self, now: float) -> bool:
        if self._last is not None and now - self._last < self._min_interval:
            self.suppressed += 1
            return False
        self._last = now
        self.relayed += 1
        return True

    def wait_s(self, now: float) -> float:
        """Seconds until a request would be relayed again."""
        if self._last is None:
            return 0.0
        return max(0.0, self._min_interval - (now - self._last))


class WorstLoss:
    """The worst recent loss fraction (RTCP's 0-255) among a track's subscribers.

    As mediasoup does for Opus: a publisher's encoder sizes its FEC from the loss in the
    receiver reports it gets, which describe only its uplink; the loss on the way to a
    subscriber would otherwise never reach it. A report older than ``max_age_s`` (a
    subscriber that left, or stopped reporting) no longer counts.
    """

    def __init__(self, max_age_s: float = 5.0) -> None:
        self._max_age = max_age_s
        self._by_sink: dict[object, tuple[int, float]] = {}

    def report(self, sink: object, fraction_lost: int, now: float) -> None:
        self._by_sink[sink] = (fraction_lost, now)

    def forget(self, sink: object) -> None:
        self._by_sink.pop(sink, None)

    def worst(self, now: float) -> int:
        return max((f for f, t in self._by_sink.values() if now - t <= self._max_age),
                   default=0)
