"""One segment file of one track: encoded frames muxed as received (PyAV, no codec runs).

Why this shape (FIELD-NOTES, "Recorder"):

- WebM for VP8/Opus (the MP4 muxer refuses VP8; non-fragmented MP4 loses everything on a
  crash), Matroska for H.264. One file per track: a muxed audio+video file keeps audio in
  memory while video is absent, and a crash then loses it.
- Clusters are cut every second and every packet is flushed to the file as it is muxed, so
  a SIGKILL loses at most about one second (the cluster being built). Without
  ``flush_packets`` FFmpeg holds 256 KiB; seekable output defaults to 5 s clusters.
- Timestamps are the owner's: pts = dts in the track's RTP clock (1/90000 video,
  1/48000 Opus), continuous across segments so segments concatenate by stream copy.
- Opus needs an OpusHead in CodecPrivate (Chrome will not play it otherwise), and streams
  added with ``add_mux_stream`` ignore extradata: Opus streams are cloned from a template
  stream whose codec context carries it. Nothing is ever opened as a decoder or encoder.
- Every ``OSError`` becomes a ``RecordingError`` whose reason the visit can act on.
"""

from __future__ import annotations

import errno
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

__all__ = ["RecordingError", "SegmentInfo", "SegmentWriter", "open_segment_file",
           "vp8_dimensions"]

CLUSTER_TIME_LIMIT_MS = 1000
CLUSTER_SIZE_LIMIT = 1 << 20  # bounds memory (and crash loss) at high bitrates
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


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A closed, fsynced segment: what the manifest hashes and signs."""

    path: Path
    first_pts: int  # in the track's clock (1/clock_rate s), on the visit's timeline
    last_pts: int  # pts of the last frame (its start, not its end)
    frames: int
    bytes: int
    keyframe_first: bool


def open_segment_file(path: Path) -> BinaryIO:
    """Create a new segment file. Exclusive: an existing recording is never overwritten."""
    return open(path, "xb")


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
    """What PyAV writes through: every write reaches the OS at once (so a killed process
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

    After a ``RecordingError`` the owner calls ``abort()``.
    """

    def __init__(self, path: Path, mime: str, clock_rate: int, *,
                 open_file: Callable[[Path], BinaryIO] = open_segment_file) -> None:
        self.path = path
        self._mime = mime.lower()
        if self._mime not in ("video/vp8", "video/h264", "audio/opus"):
            raise ValueError(f"cannot record codec {mime!r}")
        self._time_base = Fraction(1, clock_rate)
        self._open_file = open_file
        self._file: BinaryIO | None = None
        self._sink: _FlushingFile | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.stream.Stream | None = None
        self._header_bytes = 0
        self._first_pts: int | None = None
        self._last_pts = 0
        self._frames = 0
        self._keyframe_first = False

    @property
    def durable(self) -> bool:
        """True once media (a first cluster, holding the first keyframe) has reached the
        file, not only the header: the muxer builds each cluster in memory."""
        return self._sink is not None and self._sink.written > self._header_bytes

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        """Mux one frame; pts (= dts) must increase. Raises ``RecordingError``."""
        if self._container is None and not keyframe:
            raise ValueError("a segment must start with a keyframe")
        with _recording_errors():
            if self._container is None:
                self._start(data)
            assert self._stream is not None and self._container is not None
            packet = av.Packet(data)
            packet.pts = packet.dts = pts
            packet.time_base = self._time_base
            packet.stream = self._stream
            packet.is_keyframe = keyframe
            self._container.mux(packet)
        if self._first_pts is None:
            self._first_pts = pts
            self._keyframe_first = keyframe
            assert self._sink is not None
            self._header_bytes = self._sink.written  # the header is flushed, the frame not
        self._last_pts = pts
        self._frames += 1

    def _start(self, keyframe: bytes) -> None:
        self._file = self._open_file(self.path)
        self._sink = _FlushingFile(self._file)
        container = av.open(
            self._sink, "w", format="matroska" if self._mime == "video/h264" else "webm",
            container_options={
                "flush_packets": "1",
                "cluster_time_limit": str(CLUSTER_TIME_LIMIT_MS),
                "cluster_size_limit": str(CLUSTER_SIZE_LIMIT),
            })
        self._container = container
        if self._mime == "audio/opus":
            template_container = av.open(io.BytesIO(), "w", format="webm")
            template = template_container.add_stream("libopus", rate=48000, layout="stereo")
            stream = container.add_stream_from_template(template)
            stream.codec_context.extradata = OPUS_HEAD
            stream.time_base = self._time_base
            template_container.close()
        else:
            width, height = (vp8_dimensions(keyframe) if self._mime == "video/vp8"
                             else _h264_dimensions(keyframe))
            stream = container.add_mux_stream(
                "vp8" if self._mime == "video/vp8" else "h264",
                width=width, height=height, time_base=self._time_base)
        self._stream = stream

    def close(self) -> SegmentInfo:
        """Write the trailer (duration, cues), then fsync the file and its directory entry
        so a closed segment survives power loss before it is hashed and signed."""
        container, file, first_pts = self._container, self._file, self._first_pts
        if container is None or file is None or first_pts is None:
            raise ValueError("close() before any frame was written")
        with _recording_errors():
            container.close()
            self._container = None
            file.flush()
            size = os.fstat(file.fileno()).st_size
            os.fsync(file.fileno())
            file.close()
            self._file = None
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return SegmentInfo(self.path, first_pts, self._last_pts, self._frames, size,
                           self._keyframe_first)

    def abort(self) -> None:
        """Release everything after a failure without writing more. What was flushed stays
        on disk and plays like a crashed segment."""
        if self._sink is not None:
            self._sink.closed = True
        for resource in (self._container, self._file):
            if resource is not None:
                try:
                    resource.close()
                except (OSError, av.error.FFmpegError):
                    pass  # already failing: the first error is the one reported
        self._container = None
        self._file = None
