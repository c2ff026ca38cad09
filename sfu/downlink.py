"""What one subscriber's downlink carries of a publisher's video (no I/O, clock passed in).

The recording and every other subscriber get the best a publisher sends: a subscriber
behind a thin link never lowers the publisher. It is sent less instead: the low
simulcast encoding ``q`` while the publisher sends it, else temporal layer 0 of the
full one (``sfu.layers``). The choice comes from that subscriber's own feedback: a
bandwidth estimate (REMB) well under what it is sent, or heavy loss in its receiver
reports, thins it at once; it gets the full encoding back once its estimate covers it.

A receiving browser's estimate only grows with what it receives (libwebrtc holds it
under 1.5 times the incoming rate), so a thinned subscriber's estimate alone could never
show that the full encoding fits again. While thinned, the server tops what it sends
up to the estimate with padding (``padding_bps``): on a link still thin the estimate
stays where the link is (the estimator backs off at the first queueing delay, before
anything is lost), on a link that recovered it grows at the estimator's own pace until
the full encoding fits. A switch up that fails soon after doubles the wait before the
next one, so a link just under the full rate is not tried with real media every few
seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class DownlinkPolicy:
    thin_below: float = 0.75  # an estimate under this share of what is sent thins
    heavy_loss: float = 0.2  # a receiver report with this fraction lost thins
    hold_s: float = 1.0  # the estimate covers the full rate this long before going back
    wait_s: float = 2.0  # at least this long thinned before going back
    max_wait_s: float = 16.0  # the longest wait after failed switches up
    failed_within_s: float = 5.0  # thinned again this soon after going back: a failure
    probe_over: float = 1.1  # padding tops up to at most this share of the full rate


class Downlink:
    """Whether one subscriber's video is thinned, and how much padding probes its link."""

    def __init__(self, policy: DownlinkPolicy | None = None) -> None:
        self._policy = policy or DownlinkPolicy()
        self.thin = False
        self.estimate_bps: int | None = None
        self._changed_at: float | None = None
        self._wait = self._policy.wait_s
        self._covered_since: float | None = None

    def estimate(self, bitrate_bps: int, sent_bps: float, full_bps: float, now: float) -> bool:
        """A REMB against what the subscriber is sent now (``sent_bps``, without padding)
        and would be sent with the full encoding (``full_bps``); returns ``thin``."""
        p = self._policy
        self.estimate_bps = bitrate_bps
        if not self.thin:
            if sent_bps > 0 and bitrate_bps < p.thin_below * sent_bps:
                self._thin(now)
        elif bitrate_bps < full_bps:
            self._covered_since = None
        elif self._covered_since is None:
            self._covered_since = now
        elif now - self._covered_since >= p.hold_s and (
                self._changed_at is None or now - self._changed_at >= self._wait):
            self.thin = False
            self._changed_at = now
            self._covered_since = None
        return self.thin

    def loss(self, fraction: float, now: float) -> bool:
        """A receiver report's fraction lost (0 to 1); returns ``thin``."""
        if fraction >= self._policy.heavy_loss and not self.thin:
            self._thin(now)
        return self.thin

    def padding_bps(self, sent_bps: float, full_bps: float) -> int:
        """Padding to send on top of ``sent_bps`` while thinned: up to the estimate,
        never past what the full encoding needs; none when not thinned."""
        if not self.thin or self.estimate_bps is None:
            return 0
        top = min(self.estimate_bps, self._policy.probe_over * full_bps)
        return max(0, int(top - sent_bps))

    def _thin(self, now: float) -> None:
        p = self._policy
        failed = self._changed_at is not None and now - self._changed_at < p.failed_within_s
        self._wait = min(p.max_wait_s, self._wait * 2) if failed else p.wait_s
        self.thin = True
        self._changed_at = now
        self._covered_since = None


class RateMeter:
    """Bits per second over the last ``window_s``, from octets counted each period."""

    def __init__(self, period_s: float, window_s: float = 1.0) -> None:
        self.octets = 0  # counted since the last tick
        self._period = period_s
        self._periods: deque[int] = deque(maxlen=max(1, round(window_s / period_s)))
        self.bps = 0.0

    def tick(self) -> float:
        """Close one period (called every ``period_s``); returns ``bps``."""
        self._periods.append(self.octets)
        self.octets = 0
        self.bps = 8 * sum(self._periods) / (len(self._periods) * self._period)
        return self.bps
