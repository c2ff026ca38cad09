"""What one subscriber's downlink carries of a publisher's video (no I/O, clock passed in).

The recording and every other subscriber get the best a publisher sends: a subscriber
behind a thin link never lowers the publisher. It is sent less instead: the low
simulcast encoding ``q`` while the publisher sends it, else temporal layer 0 of the
full one (``sfu.layers``). What thins it at once: a queue on its link (from its
browser's transport feedback, ``sfu.queueing``: the first sign, within a report of the
link filling), a bandwidth estimate (REMB, from a subscriber that sends no transport
feedback) that falls to well under what it is sent, or heavy loss in its receiver
reports (a fifth over a second). Only a falling estimate thins: a receiving browser's
estimate starts low and climbs for seconds after a join while the full encoding flows
without loss.

Coming back cannot wait for an estimate: after a link was flooded, libwebrtc's
receive-side estimate falls to about what the thin stream carries and then climbs by
about a kilobit per second, and it never passes 1.5 times what it receives. So the
server probes: a while after thinning it pads the subscriber's video (``probe_bps``)
from what it is sent up to what the full encoding needs, over two seconds,
and holds that for a second. A queue on the link, a falling estimate or loss (the
subscriber's NACKs) ends it at once, and doubles the wait before the next one; a probe
that passes brings the full encoding back. The queue ends it first, long before a link
still thin drops anything: a full queue delays the audio behind the padding past what
the receiver's jitter buffer holds. A switch up that fails soon after (a queue, heavy
loss, a falling estimate) doubles the wait as well.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class DownlinkPolicy:
    thin_below: float = 0.75  # a falling estimate under this share of what is sent thins
    fall: float = 0.9  # an estimate under this share of the one before has fallen
    heavy_loss: float = 0.2  # this fraction lost over the loss window thins
    loss_window_s: float = 1.0
    loss_packets: int = 20  # fewer packets expected in the window say nothing
    wait_s: float = 4.0  # thinned this long before the first probe
    max_wait_s: float = 8.0  # the longest wait after failed probes or switches up
    failed_within_s: float = 5.0  # thinned again this soon after going back: a failure
    ramp_s: float = 2.0  # a probe climbs from what is sent to the full rate in this time
    hold_s: float = 1.0  # and holds the full rate this long
    probe_nacks: int = 1  # packets NACKed during a probe that end it
    queue_thin_ms: float = 80.0  # a queue this long on the link (transport feedback) thins
    queue_probe_ms: float = 25.0  # and this long ends a probe


class Downlink:
    """Whether one subscriber's video is thinned, and when and how its link is probed."""

    def __init__(self, policy: DownlinkPolicy | None = None) -> None:
        self._policy = policy or DownlinkPolicy()
        self.thin = False
        # Thinned because its link queues what it is sent (not for loss alone, which may
        # be the publisher's): what it is sent until the switch only fills the queue.
        self.flooded = False
        self.estimate_bps: int | None = None
        self._changed_at: float | None = None
        self._wait = self._policy.wait_s
        self._probe_at: float | None = None  # when the next probe starts (while thin)
        self._nacks = 0  # packets NACKed during the probe under way
        self._reports: deque[tuple[float, int, int]] = deque()  # (when, lost, highest)

    def estimate(self, bitrate_bps: int, sent_bps: float, now: float) -> bool:
        """A REMB against the video the subscriber is sent now; returns ``thin``."""
        fell = (self.estimate_bps is not None
                and bitrate_bps < self._policy.fall * self.estimate_bps)
        self.estimate_bps = bitrate_bps
        if not fell:
            return self.thin
        if not self.thin and bitrate_bps < self._policy.thin_below * sent_bps:
            self._thin(now, flooded=True)
        elif self._in_probe(now):
            self._probe_failed(now)
        return self.thin

    def loss(self, lost: int, highest: int, now: float) -> bool:
        """A receiver report's cumulative packets lost and extended highest sequence
        number; returns ``thin``. The loss is judged over the last ``loss_window_s``: a
        browser sends a report with every NACK, so one report's own fraction may cover a
        handful of packets."""
        p = self._policy
        reports = self._reports
        reports.append((now, lost, highest))
        while len(reports) > 2 and now - reports[1][0] >= p.loss_window_s:
            reports.popleft()
        then, lost0, highest0 = reports[0]
        expected = highest - highest0
        if (not self.thin and now - then >= p.loss_window_s and expected >= p.loss_packets
                and lost - lost0 >= p.heavy_loss * expected):
            self._thin(now, flooded=False)
        return self.thin

    def queue(self, queue_ms: float, now: float) -> bool:
        """How long the subscriber's link now queues what it is sent (``sfu.queueing``);
        returns ``thin``. A queue shows within a report (50-100 ms) of the link filling,
        where an estimate falls only after hundreds of milliseconds and loss only once
        the queue overflows: by then the audio behind it came too late to be played."""
        p = self._policy
        if not self.thin and queue_ms >= p.queue_thin_ms:
            self._thin(now, flooded=True)
        elif queue_ms >= p.queue_probe_ms and self._in_probe(now):
            self._probe_failed(now)
        return self.thin

    def nacked(self, packets: int, now: float) -> None:
        """The subscriber NACKed ``packets``: the end of a probe under way."""
        if not self._in_probe(now):
            return
        self._nacks += packets
        if self._nacks >= self._policy.probe_nacks:
            self._probe_failed(now)

    def probe_bps(self, sent_bps: float, full_bps: float, now: float) -> int:
        """Padding to send now on top of the video sent (``sent_bps``) towards what the
        full encoding needs (``full_bps``); a probe that ran its course ends ``thin``."""
        if not self._in_probe(now):
            return 0
        assert self._probe_at is not None
        p = self._policy
        elapsed = now - self._probe_at
        if elapsed >= p.ramp_s + p.hold_s:
            self.thin = self.flooded = False
            self._changed_at = now
            self._probe_at = None
            return 0
        return max(0, int((full_bps - sent_bps) * min(1.0, elapsed / p.ramp_s)))

    def _in_probe(self, now: float) -> bool:
        return self.thin and self._probe_at is not None and now >= self._probe_at

    def _probe_failed(self, now: float) -> None:
        self._wait = min(self._policy.max_wait_s, self._wait * 2)
        self._probe_at = now + self._wait
        self._nacks = 0

    def _thin(self, now: float, flooded: bool) -> None:
        p = self._policy
        failed = self._changed_at is not None and now - self._changed_at < p.failed_within_s
        self._wait = min(p.max_wait_s, self._wait * 2) if failed else p.wait_s
        self.thin, self.flooded = True, flooded
        self._changed_at = now
        self._probe_at = now + self._wait
        self._nacks = 0


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
