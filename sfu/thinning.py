"""Each subscriber connection's video sent at what its link carries (``sfu.downlink``).

Every quarter second the control measures the video the connection is sent (each
sink's octets) and hands each video sink's ``Downlink`` the subscriber's latest
estimate (REMB); the queue on the subscriber's link (``sfu.queueing``) it hands on as
each transport feedback brings it. While a sink is thinned it runs every 20 ms: the
subscriber's NACKs and estimates go to the probe under way at once, and the probe's
padding is sent, paced so that the link's queue never takes a burst. A sink whose
choice changed moves to the encoding it now wants, at that one's next keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sfu.downlink import RateMeter
from sfu.forwarder import RTP_OVERHEAD
from sfu.sink import Sink

log = logging.getLogger(__name__)


class DownlinkControl:
    """Thins and probes the video sinks of one subscriber connection."""

    DECIDE_S = 0.25
    PACE_S = 0.02
    FRESH_S = 3.0  # an estimate older than this is not acted on (the subscriber went quiet)

    def __init__(self, sinks: list[Sink], clock: Callable[[], float] = time.monotonic) -> None:
        self._sinks = sinks
        self._video = [sink for sink in sinks if sink.kind == "video"]
        self._clock = clock
        self._meters = {sink: RateMeter(self.DECIDE_S) for sink in self._video}
        self._counted = {sink: 0 for sink in self._video}
        self._nacks = 0
        self._sent = 0.0  # video sent to the subscriber (bits/s)
        self._debt = 0.0  # padding octets due and not yet sent
        self._task = asyncio.ensure_future(self._run())

    def close(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        decided = paced = self._clock()
        while True:
            thin = any(sink.downlink.thin for sink in self._video)
            await asyncio.sleep(self.PACE_S if thin else self.DECIDE_S)
            now = self._clock()
            try:
                if now - decided >= self.DECIDE_S:
                    decided = now
                    self._decide(now)
                self._probe(now, now - paced)
                paced = now
            except Exception:
                log.exception("downlink control failed")

    def _decide(self, now: float) -> None:
        for sink, meter in self._meters.items():
            octets = sink.octets + sink.packets * RTP_OVERHEAD
            meter.octets, self._counted[sink] = octets - self._counted[sink], octets
            meter.tick()
        # A receiving browser's estimate covers its video alone (libwebrtc leaves audio
        # out of its receive-side estimate).
        self._sent = sum(meter.bps for meter in self._meters.values())
        for sink in self._video:
            if sink.source is None or not sink.enabled or sink.remb is None:
                continue
            bitrate, at = sink.remb
            thin = sink.downlink.thin
            if now - at <= self.FRESH_S and sink.downlink.estimate(bitrate, self._sent,
                                                                   now) != thin:
                sink.reconsider()

    def queued(self, queue_ms: float) -> None:
        """The subscriber's link queues this long now (its transport feedback,
        ``sfu.queueing``): acted on at once, as it comes."""
        now = self._clock()
        for sink in self._video:
            if sink.source is None or not sink.enabled:
                continue
            thin = sink.downlink.thin
            if sink.downlink.queue(queue_ms, now) != thin:
                sink.reconsider()

    def _probe(self, now: float, elapsed: float) -> None:
        nacks = sum(sink.nacked for sink in self._sinks)
        new_nacks, self._nacks = nacks - self._nacks, nacks
        padding, prober = 0, None
        for sink in self._video:
            source = sink.source
            if not sink.downlink.thin or source is None:
                continue
            if new_nacks:
                sink.downlink.nacked(new_nacks, now)
            if sink.remb is not None:  # a falling estimate ends a probe: heard at once
                sink.downlink.estimate(sink.remb[0], self._sent, now)
            full = self._sent - self._meters[sink].bps + source.full.rate.bps
            pad = sink.downlink.probe_bps(self._sent, full, now)
            if not sink.downlink.thin:
                sink.reconsider()  # the probe passed
            elif pad > padding:
                padding, prober = pad, sink
        if prober is None:
            self._debt = 0.0
            return
        self._debt += padding / 8 * elapsed
        sent = prober.pad(int(self._debt))
        self._debt = self._debt - sent if sent else 0.0
