"""Keyframe requests to one publisher encoding: rate limited, and never lost.

A subscriber that joins, a tile that switches encoding and the recorder at a segment
boundary all need a keyframe; the publisher is asked at most once per interval
(``sfu.feedback.KeyframeRequests``, shared by a publisher's encodings, since Chromium
answers one request per 300 ms across them). A request before the publisher's first
packet waits for that packet; one inside the interval is sent when the interval ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc import RTCRtpReceiver

from sfu import glue_rtp, metrics
from sfu.feedback import KeyframeRequests


class KeyframeAsker:
    """Asks one publisher encoding for keyframes."""

    def __init__(self, receiver: RTCRtpReceiver, limiter: KeyframeRequests,
                 clock: Callable[[], float]) -> None:
        self.limiter = limiter
        self._receiver = receiver
        self._clock = clock
        self._ssrc: int | None = None
        self._pending = False
        self._deferred: asyncio.TimerHandle | None = None

    def first_packet(self, ssrc: int) -> None:
        """The publisher's stream is known: a request that waited for it goes now."""
        self._ssrc = ssrc
        if self._pending:
            self._pending = False
            asyncio.ensure_future(self.request())

    async def request(self) -> None:
        if self._ssrc is None:
            self._pending = True
            return
        now = self._clock()
        if self.limiter.should_relay(now):
            metrics.KEYFRAME_REQUESTS.labels("relayed").inc()
            await glue_rtp.send_pli(self._receiver, self._ssrc)
        elif self._deferred is None:
            metrics.KEYFRAME_REQUESTS.labels("deferred").inc()
            self._deferred = asyncio.get_event_loop().call_later(
                self.limiter.wait_s(now), self._send_deferred)
        else:
            metrics.KEYFRAME_REQUESTS.labels("suppressed").inc()

    def close(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()

    def _send_deferred(self) -> None:
        self._deferred = None
        asyncio.ensure_future(self.request())
