"""The tap the SFU holds for a recorded track, handed out before its recording is open.

``Recordings.tap`` is called from the SFU's UDP receive callback and must not wait for
the disk or the database, so it returns this tap at once and opens the recording in its
own thread; the tap turns ready only once the recording is open and the track's first
keyframe is in the file (``visit.tap``: nothing is forwarded before).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from recorder.track import TrackRecorder
from visit.tap import TappedPacket

# Packets a tap keeps while its recording is being opened: about four seconds of video
# at 2.5 Mbit/s. Older ones are dropped; the recorder then waits for the next keyframe
# and asks the publisher for one.
HELD_PACKETS = 1000


class RecordingTap:
    """Until ``start`` it is not ready and keeps the latest ``HELD_PACKETS`` packets with
    their arrival times; ``start`` gives them to the track's recorder, which places them
    on the timeline where they arrived and turns the tap ready at the first keyframe.
    From then on ``packet`` is the recorder's own (the SFU calls it for every packet)."""

    def __init__(self, on_close: Callable[[RecordingTap], None] | None = None) -> None:
        self.ready = False  # an attribute: the SFU reads it for every packet
        self._on_close = on_close  # the visit forgets a closed tap (and what it holds)
        self.track: TrackRecorder | None = None
        self.packet: Callable[[TappedPacket, float], None] = self._hold
        self._held: deque[tuple[TappedPacket, float, float]] = deque(maxlen=HELD_PACKETS)
        self._arrived: float | None = None  # wall-clock arrival of the packet replayed
        self._closed = False

    def _hold(self, packet: TappedPacket, now: float) -> None:
        if not self._closed:
            self._held.append((packet, now, time.time()))

    def wall_clock(self) -> float:
        """The recorder's clock: a held packet is placed at its arrival, not its replay."""
        return time.time() if self._arrived is None else self._arrived

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self, track: TrackRecorder) -> None:
        if self._closed:
            track.close()
            return
        self.track = track
        for packet, now, arrived in self._held:
            self._arrived = arrived
            track.packet(packet, now)  # type: ignore[arg-type]
        self._held.clear()
        self._arrived = None
        self.packet = track.packet  # type: ignore[assignment]

    def abandon(self) -> None:
        """Close without finishing the open segment (``TrackRecorder.abandon``)."""
        if self.track is not None:
            self.track.abandon()
        self.close()

    def close(self) -> None:
        self._closed = True
        self._held.clear()
        self.ready = False
        if self.track is not None:
            self.track.close()
        if self._on_close is not None:
            self._on_close(self)
