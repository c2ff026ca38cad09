"""One segment file of one track: encoded frames muxed as received (no codec runs).

Why this shape:

- WebM for VP8/Opus (the MP4 muxer refuses VP8; non-fragmented MP4 loses everything on a
  crash), Matroska for H.264. One file per track: a muxed audio+video file keeps audio in
  memory while video is absent, and a crash then loses it.
- VP8 and Opus go through ``WebmMuxer`` (recorder/webm.py, ours: PyAV's per-frame cost was
  the larger part of the recorder's), H.264 through PyAV's Matroska muxer.
- WebM segments reach the file at each ``flush`` (the track recorder's, every 500 ms):
  a SIGKILL or a full disk loses at most that of media already forwarded. PyAV (H.264)
  writes each cluster whole, every second: without ``flush_packets`` FFmpeg holds
  256 KiB; seekable output defaults to 5 s clusters.
- Timestamps are the owner's: pts = dts in the track's RTP clock (1/90000 video,
  1/48000 Opus), continuous across segments so segments concatenate by stream copy. The
  files store milliseconds, as libavformat would.
- Opus needs an OpusHead in CodecPrivate (Chrome will not play it otherwise).
- Every ``OSError`` becomes a ``RecordingError`` whose reason the visit can act on.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.container
import av.error

from recorder.manifest import Hasher
from recorder.webm import WebmMuxer, opus_track, video_track

__all__ = ["RecordingError", "SegmentInfo", "SegmentWriter", "open_segment_file",
           "segment_writer", "sync_segment", "vp8_dimensions"]

CLUSTER_TIME_LIMIT_MS = 1000
CLUSTER_SIZE_LIMIT = 1 << 20  # keeps clusters seekable at high bitrates
# OpusHead (RFC 7845 5.1): version 1, 2 channels (WebRTC always signals opus/48000/2),
# pre-skip 0 (the stream is joined mid-flight), 48 kHz, gain 0, mapping family 0.
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 0, 48000, 0, 0)

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


class RecordingError(Exception):
    """Writing a recording failed; ``reason`` is "disk_full", "io_error" or "permission"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason

    @classmethod
    def from_os_error(cls, error: OSError) -> RecordingError:
        if error.errno in _DISK_FULL:
            reason = "disk_full"
        elif error.errno in _PERMISSION or isinstance(error, PermissionError):
            reason = "permission"
        else:
            reason = "io_error"
        return cls(reason, str(error))

    @staticmethod
    def reason_of(error: BaseException) -> str:
        """The ``FAILURES`` reason for any error while recording."""
        if isinstance(error, RecordingError):
            return error.reason
        if isinstance(error, OSError):
            return RecordingError.from_os_error(error).reason
        return "internal_error"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A closed segment: what the manifest hashes and signs (once ``sync_segment``d)."""

    path: Path
    first_pts: int  # in the track's clock (1/clock_rate s), on the visit's timeline
    last_pts: int  # pts of the last frame (its start, not its end)
    frames: int
    bytes: int
    keyframe_first: bool
    sha256: str | None = None  # of the file's bytes, when hashed as they were written


def open_segment_file(path: Path) -> BinaryIO:
    """Create a new segment file. Exclusive: an existing recording is never overwritten.
    Unbuffered: each write is in the file (the page cache) when it returns."""
    return open(path, "xb", buffering=0)


def vp8_dimensions(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1: 14 bits each, little
    endian, after the 3-byte frame tag and the start code; the top 2 bits are scaling)."""
    width, height = struct.unpack_from("<HH", keyframe, 6)
    return width & 0x3FFF, height & 0x3FFF


def _h264_dimensions(access_unit: bytes) -> tuple[int, int]:
    """Width and height from the SPS in front of an IDR, via FFmpeg's H.264 *parser*
    (bitstream parsing only: no decoder is opened)."""
    parser = av.CodecContext.create("h264", "r")
    parser.parse(access_unit)
    parser.parse(b"")
    return parser.width, parser.height


class _FlushingFile:
    """What PyAV writes through (H.264): every write reaches the OS at once (so a killed process
    loses nothing that FFmpeg has flushed), and PyAV gets no ``close`` so the writer can
    fsync the file after the trailer. ``closed`` set to True makes PyAV skip the trailer."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._file.flush()
        self.written += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


@contextmanager
def _recording_errors() -> Iterator[None]:
    """Translate what file and muxer raise into a ``RecordingError``. An exception raised
    by the file object inside PyAV's write callback comes back out of ``mux`` unchanged."""
    try:
        yield
    except OSError as error:
        raise RecordingError.from_os_error(error) from error
    except av.error.FFmpegError as error:  # the muxer failed on what was written before
        raise RecordingError("io_error", str(error)) from error


class SegmentWriter:
    """Writes one segment file of one track. The first frame must be a keyframe.

    The file handling common to both muxers: bookkeeping for ``SegmentInfo``, close,
    release on abort. After a ``RecordingError`` the owner calls ``abort()``.
    """

    def __init__(self, path: Path, clock_rate: int, *,
                 open_file: Callable[[Path], BinaryIO] = open_segment_file) -> None:
        self.path = path
        self._clock_rate = clock_rate
        self._open_file = open_file
        self._file: BinaryIO | None = None
        self._first_pts: int | None = None
        self._last_pts = 0
        self._frames = 0
        self._keyframe_first = False

    @property
    def durable(self) -> bool:
        """True once media (the first keyframe), not only the header, is in the file."""
        raise NotImplementedError

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        """Mux one frame; pts (= dts) must increase. Raises ``RecordingError``."""
        if self._first_pts is None:
            if not keyframe:
                raise ValueError("a segment must start with a keyframe")
            with _recording_errors():
                self._file = self._open_file(self.path)
                self._start(data)
            self._first_pts = pts
            self._keyframe_first = keyframe
        with _recording_errors():
            self._mux(data, pts, keyframe)
        self._last_pts = pts
        self._frames += 1

    def flush(self) -> None:
        """Write out what ``write`` holds back (the owner calls it every so often)."""

    def frame_sink(self) -> Callable[[bytes, int, bool], None]:
        """What to call, like ``write``, for the frames after the first (the track
        recorder calls it for every frame: the WebM writer hands out its muxer's ``add``,
        one call less per frame). Valid until the next ``close`` or ``abort``."""
        return self.write

    def close(self) -> SegmentInfo:
        """Write the trailer (duration, cues) and close the file. Not yet durable: the
        owner calls ``sync_segment`` before it hashes and signs the segment, off the event
        loop (an fsync can take as long as the disk likes)."""
        file, first_pts = self._file, self._first_pts
        if file is None or first_pts is None:
            raise ValueError("close() before any frame was written")
        digest = getattr(file, "digest", self._digest)  # an encrypting file hashes itself
        with _recording_errors():
            self._finish()
            file.flush()
            file.close()  # an encrypting file writes its final chunk here
            size = os.stat(self.path).st_size
            self._file = None
        return SegmentInfo(self.path, first_pts, self._last_pts, self._frames, size,
                           self._keyframe_first, digest())

    def abort(self) -> None:
        """Release everything after a failure without writing more. What was written stays
        on disk and plays like a crashed segment."""
        self._release()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # already failing: the first error is the one reported
            self._file = None

    def _start(self, keyframe: bytes) -> None:
        raise NotImplementedError

    def _mux(self, data: bytes, pts: int, keyframe: bool) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Drop the muxer after a failure."""

    def _digest(self) -> str | None:
        """SHA-256 of what was written, if the writer hashed it as it wrote."""
        return None


class WebmSegmentWriter(SegmentWriter):
    """VP8 or Opus, through ``WebmMuxer``. The first frame is written at once (the
    recorder is ready when a keyframe is in the file), the others at each ``flush``: one
    write per frame cost more than the muxing. Append-only, hashed as written: the
    manifest need not read the segment again."""

    def __init__(self, path: Path, mime: str, clock_rate: int, *,
                 open_file: Callable[[Path], BinaryIO] = open_segment_file) -> None:
        super().__init__(path, clock_rate, open_file=open_file)
        self._video = mime.lower() == "video/vp8"
        self._muxer: WebmMuxer | None = None
        self._sha256: Hasher | None = hashlib.sha256()  # None: the file hashes itself

    @property
    def durable(self) -> bool:
        return self._frames > 0

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        """The first frame opens the file and is written at once; the muxer keeps the
        others, and their count and last pts, until ``flush``."""
        muxer = self._muxer
        if muxer is None:
            super().write(data, pts, keyframe)
        else:
            muxer.add(data, pts, keyframe)

    def frame_sink(self) -> Callable[[bytes, int, bool], None]:
        return self.write if self._muxer is None else self._muxer.add

    def flush(self) -> None:
        data = self._muxer.take() if self._muxer is not None else None
        if data:
            with _recording_errors():
                self._append(data)

    def _start(self, keyframe: bytes) -> None:
        if hasattr(self._file, "digest"):
            self._sha256 = None
        track = video_track(*vp8_dimensions(keyframe)) if self._video else opus_track(OPUS_HEAD)
        self._muxer = WebmMuxer(track, self._clock_rate, video=self._video,
                                cluster_ms=CLUSTER_TIME_LIMIT_MS, cluster_bytes=CLUSTER_SIZE_LIMIT)
        self._append(self._muxer.start())

    def _mux(self, data: bytes, pts: int, keyframe: bool) -> None:  # the first frame
        assert self._muxer is not None
        self._muxer.add(data, pts, keyframe)
        self._append(self._muxer.take())

    def _finish(self) -> None:
        assert self._muxer is not None
        self._frames, self._last_pts = self._muxer.frames, self._muxer.last_pts
        self._append(self._muxer.take())
        self._muxer = None

    def _release(self) -> None:
        self._muxer = None

    def _digest(self) -> str | None:
        return self._sha256.hexdigest() if self._sha256 is not None else None

    def _append(self, data: bytes | bytearray) -> None:
        """One write (the file is unbuffered); a short one is retried, so that a full disk
        raises rather than leaving a frame half written and unreported. The file is
        append-only: it is hashed as it is written."""
        assert self._file is not None
        if self._sha256 is not None:
            self._sha256.update(data)
        written = self._file.write(data)
        while written is not None and written < len(data):
            data = data[written:]
            written = self._file.write(data)
        self._file.flush()  # an encrypting file seals what it holds as a chunk


class H264SegmentWriter(SegmentWriter):
    """H.264 through PyAV's Matroska muxer (it builds the avcC from the in-band SPS/PPS)."""

    def __init__(self, path: Path, clock_rate: int, *,
                 open_file: Callable[[Path], BinaryIO] = open_segment_file) -> None:
        super().__init__(path, clock_rate, open_file=open_file)
        self._time_base = Fraction(1, clock_rate)
        self._sink: _FlushingFile | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.stream.Stream | None = None
        self._header_bytes = 0

    @property
    def durable(self) -> bool:
        """The muxer builds each cluster in memory: durable once the first is flushed."""
        return self._sink is not None and self._sink.written > self._header_bytes

    def _start(self, keyframe: bytes) -> None:
        assert self._file is not None
        self._sink = _FlushingFile(self._file)
        self._container = av.open(self._sink, "w", format="matroska", container_options={
            "flush_packets": "1",
            "cluster_time_limit": str(CLUSTER_TIME_LIMIT_MS),
            "cluster_size_limit": str(CLUSTER_SIZE_LIMIT),
        })
        width, height = _h264_dimensions(keyframe)
        self._stream = self._container.add_mux_stream(
            "h264", width=width, height=height, time_base=self._time_base)

    def _mux(self, data: bytes, pts: int, keyframe: bool) -> None:
        assert self._stream is not None and self._container is not None
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = self._time_base
        packet.stream = self._stream
        packet.is_keyframe = keyframe
        self._container.mux(packet)
        if self._frames == 0:  # the header is flushed, the first frame not
            assert self._sink is not None
            self._header_bytes = self._sink.written

    def _finish(self) -> None:
        assert self._container is not None
        self._container.close()
        self._container = None

    def _release(self) -> None:
        if self._sink is not None:
            self._sink.closed = True  # PyAV skips the trailer
        if self._container is not None:
            try:
                self._container.close()
            except (OSError, av.error.FFmpegError):
                pass  # already failing: the first error is the one reported
            self._container = None


def sync_segment(path: Path) -> None:
    """fsync a closed segment and its directory entry, so it survives power loss before
    it is hashed and signed. Raises ``RecordingError``."""
    with _recording_errors():
        for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY)):
            fd = os.open(target, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def segment_writer(path: Path, mime: str, clock_rate: int, *,
                   open_file: Callable[[Path], BinaryIO] = open_segment_file
                   ) -> SegmentWriter:
    """The writer for a track's codec: WebM for VP8 and Opus, Matroska for H.264."""
    codec = mime.lower()
    if codec == "video/h264":
        return H264SegmentWriter(path, clock_rate, open_file=open_file)
    if codec in ("video/vp8", "audio/opus"):
        return WebmSegmentWriter(path, mime, clock_rate, open_file=open_file)
    raise ValueError(f"cannot record codec {mime!r}")
