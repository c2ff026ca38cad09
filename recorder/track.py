"""The recorder of one published track, as the SFU sees it: a ``visit.tap.Tap``.

Recording is mandatory and fails closed: the SFU forwards a participant's media only once
each of their track recorders is ``ready`` (its first keyframe is in the file), and any
failure to write is reported at once through ``on_failure`` so the visit can end with cause
``recording_failed``. ``packet()`` never raises: the SFU's forwarding loop must not be the
place where a disk error surfaces as an exception.

Files: ``<directory>/<track_name>/segment-00001.webm`` (``.mkv`` for H.264), one per about
``segment_s`` seconds, each starting on a keyframe. Timestamps of all tracks of a visit share
one timeline: pts = unwrapped RTP timestamp - first RTP timestamp
+ round((first arrival - epoch) * clock_rate), continuous across segments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from aiortc.rtp import RtpPacket

from recorder.manifest import segment_number
from recorder.reassembly import Frame, FrameAssembler
from recorder.segments import (
    RecordingError,
    SegmentInfo,
    SegmentWriter,
    open_segment_file,
    segment_writer,
)

__all__ = ["TrackRecorder"]

log = logging.getLogger(__name__)

# A video segment is cut at the first keyframe once it is this much short of segment_s,
# and a keyframe is requested at that moment: a publisher answers a PLI within a round
# trip and a frame, so waiting for the exact boundary would waste that keyframe.
KEYFRAME_LEAD_S = 1.0
LOSS_REQUEST_INTERVAL_S = 0.5  # while frames are dropped waiting for a keyframe
CUT_REQUEST_INTERVAL_S = 1.0  # while a due segment cut waits for its keyframe
# Once ready, the owner calls flush() this often: a killed recorder loses at most this much
# of the media already forwarded, no more than the 0.3-0.5 s it lost when PyAV wrote the
# files.
BATCH_S = 0.5


# Frames further apart than this mean media is missing from the recording (a frame
# interval is 20-100 ms; a publisher that stops is a gap too).
MAX_FRAME_GAP_S = 0.5


class TrackRecorder:
    """Records one track: RTP -> frames (``FrameAssembler``) -> segments (``SegmentWriter``).

    Callbacks run synchronously inside ``packet()``/``close()``; ``request_keyframe`` should
    only schedule the PLI. ``now`` may come from any clock counting seconds (the SFU's
    monotonic clock); ``clock`` is the wall clock ``epoch`` was taken from, read once to place
    the first frame on the visit's timeline.
    """

    def __init__(self, directory: Path, track_name: str, kind: str, mime: str,
                 clock_rate: int, *,
                 epoch: float,
                 segment_s: float = 10.0,
                 request_keyframe: Callable[[], None],
                 on_ready: Callable[[], None],
                 on_segment: Callable[[SegmentInfo], None],
                 on_failure: Callable[[str], None],
                 on_gap: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 open_file: Callable[[Path], BinaryIO] | None = None) -> None:
        self.kind = kind
        self._directory = directory / track_name
        self._mime = mime
        self._clock_rate = clock_rate
        self._epoch = epoch
        self._extension = ".mkv" if mime.lower() == "video/h264" else ".webm"
        self._assembler = FrameAssembler(kind, mime, clock_rate)
        video = kind == "video"
        self._video = video
        self._cut_after = round(max(0.0, segment_s - (KEYFRAME_LEAD_S if video else 0.0))
                                * clock_rate)
        self._request_keyframe = request_keyframe
        self._on_ready = on_ready
        self._on_segment = on_segment
        self._on_failure = on_failure
        self._on_gap = on_gap  # seconds of media missing from the recording (loss, drops)
        self._clock = clock
        self._open_file = open_file or open_segment_file
        self._writer: SegmentWriter | None = None
        self._segment_number = 0
        self._segment_first_pts = 0
        self._previous_pts: int | None = None  # pts of the last frame written (gap check)
        self._max_gap = MAX_FRAME_GAP_S * clock_rate
        self._segments: list[SegmentInfo] = []
        self._first_ts: int | None = None
        self._origin = 0
        self._last_request: float | None = None
        self._pending: list[tuple[RtpPacket, float]] = []  # arrived, not yet recorded
        self._cut_due = False  # the open video segment waits for a keyframe to be cut
        # True once the first keyframe has reached the file: media may be forwarded. (An
        # attribute, not a property: the SFU reads it for every packet.)
        self.ready = False
        self._stopped = False

    def packet(self, packet: RtpPacket, now: float) -> None:
        """Take one RTP packet of the track. Never raises: failures go to ``on_failure``
        once, then the recorder stops.

        Until ready, each packet is recorded at once (the SFU forwards nothing until
        then); after that, packets wait for ``flush``."""
        if self._stopped:
            return
        self._pending.append((packet, now))
        if not self.ready:
            self._record(now)

    def flush(self, now: float) -> None:
        """Record the packets taken since the last flush. The owner calls this every
        ``BATCH_S`` for all its recorders in one pass: the recorder runs for every packet
        the SFU forwards, and a batch costs less than a packet at a time (one write, the
        common case taken inline), all tracks at once less again than each on its own
        schedule between forwarded packets (BENCHMARKS.md). What a batch holds is what a
        crash or a full disk can cost of media already forwarded. Never raises."""
        if self._pending and not self._stopped:
            self._record(now)

    def _record(self, now: float) -> None:
        batch, self._pending = self._pending, []
        try:
            frames = self._assembler.push_batch(batch)  # type: ignore[arg-type]
            if frames:
                self._write(frames, now)
            if self._writer is not None:
                self._writer.flush()
            if self._video and (self._cut_due or self._assembler.needs_keyframe):
                self._ask_for_keyframe(now)
        except RecordingError as error:
            self._fail(error.reason, error)
        except Exception as error:  # a bug must still fail closed, not break forwarding
            self._fail("internal_error", error)

    def close(self) -> list[SegmentInfo]:
        """Close the open segment (``on_segment`` is called for it) and stop. Returns every
        segment closed by this recorder. Failures go to ``on_failure``, as in ``packet``."""
        if not self._stopped:
            if self._pending:
                self._record(self._pending[-1][1])
        if not self._stopped:
            self._stopped = True
            try:
                self._close_segment()
            except RecordingError as error:
                self._fail(error.reason, error)
            except Exception as error:
                self._fail("internal_error", error)
        return list(self._segments)

    def abandon(self) -> None:
        """Stop at once, writing nothing more and announcing no segment: another node
        holds the visit now, and salvages what this one left open."""
        self._stopped = True
        self.ready = False
        self._pending = []
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def _write(self, frames: list[Frame], now: float) -> None:
        if self._first_ts is None:
            first = frames[0]
            self._first_ts = first.rtp_timestamp_unwrapped
            # frame.arrival is on the SFU's clock: bring it onto epoch's (wall) clock.
            first_arrival = self._clock() - (now - first.arrival)
            self._origin = max(0, round((first_arrival - self._epoch) * self._clock_rate))
        offset = self._origin - self._first_ts
        cut_after = self._cut_after
        max_gap = self._max_gap
        previous = self._previous_pts
        writer = self._writer
        add = None if writer is None else writer.frame_sink()
        cut_at = self._segment_first_pts + cut_after  # a keyframe from here on cuts
        for data, timestamp, keyframe, _ in frames:
            pts = timestamp + offset
            if add is None or (keyframe and pts >= cut_at):
                if writer is not None:
                    self._close_segment()
                writer = self._open_segment(pts)
                writer.write(data, pts, keyframe)  # opens the file
                add = writer.frame_sink()
                cut_at = pts + cut_after
            else:
                add(data, pts, keyframe)
            if previous is not None and pts - previous > max_gap and self._on_gap is not None:
                self._on_gap((pts - previous) / self._clock_rate)
            previous = pts
        self._previous_pts = previous
        if self._video:
            self._cut_due = previous - self._segment_first_pts >= cut_after  # type: ignore[operator]
        if not self.ready and writer is not None and writer.durable:
            self.ready = True
            self._on_ready()

    def _open_segment(self, pts: int) -> SegmentWriter:
        if self._segment_number == 0:
            try:
                self._directory.mkdir(parents=True, exist_ok=True)
                # A rejoin or a restart continues the track's numbering.
                self._segment_number = max(
                    (n for n in (segment_number(p.name) for p in self._directory.iterdir())
                     if n is not None), default=0)
            except OSError as error:
                raise RecordingError.from_os_error(error) from error
        self._segment_number += 1
        path = self._directory / f"segment-{self._segment_number:05d}{self._extension}"
        self._writer = segment_writer(path, self._mime, self._clock_rate,
                                      open_file=self._open_file)
        self._segment_first_pts = pts
        return self._writer

    def _close_segment(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            info = writer.close()
        except RecordingError:
            writer.abort()
            raise
        self._segments.append(info)
        self._on_segment(info)

    def _ask_for_keyframe(self, now: float) -> None:
        """Ask the publisher for a keyframe while frames are being dropped for want of one,
        and when the open segment is due to be cut; rate-limited either way."""
        interval = (LOSS_REQUEST_INTERVAL_S if self._assembler.needs_keyframe
                    else CUT_REQUEST_INTERVAL_S)
        if self._last_request is None or now - self._last_request >= interval:
            self._last_request = now
            self._request_keyframe()

    def _fail(self, reason: str, error: Exception) -> None:
        self._stopped = True
        self.ready = False  # fail closed: forward nothing more
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        log.error("recording of %s failed: %s", self._directory, reason, exc_info=error)
        try:
            self._on_failure(reason)
        except Exception:
            log.exception("on_failure callback of %s raised", self._directory)
