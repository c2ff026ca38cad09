"""The WebM layout of one VP8 or Opus segment, as bytes: a muxer with no I/O.

Why our own muxer for these two codecs: the recorder runs for every packet the SFU
forwards, and muxing through PyAV (an ``av.Packet`` per frame, its ``Fraction`` time base,
libavformat's dynamic cluster buffer) cost more per frame than everything else in the
recorder together; recording must add at most 15% to the forwarding cost (BENCHMARKS.md
has the measurements).

The file is written append-only, the way a live WebM stream is (Chrome's MediaRecorder
writes the same shape), so every byte is final once written: the segment is hashed as it
is written (no second read), and a crash leaves a file that plays up to its last write.

- EBML header, then a Segment of unknown size, Info (1 ms timestamps), Tracks (one track:
  VP8 with its picture size, or Opus with its OpusHead).
- Clusters of SimpleBlocks, each emitted whole (with its size) at ``take``, so a cluster
  holds what came between two writes (recorder/segments.py: the first frame at once, then
  every 500 ms); a cluster is also cut after a second, at a size bound and before every
  video keyframe.
- No Cues, Duration or SeekHead: they would have to be written back into the head at the
  end. Segments are the evidence and are read front to back (finalize, recovery, verify);
  the per-party final file that replay plays is written by libavformat, with its index.
"""

from __future__ import annotations

import struct

__all__ = ["WebmMuxer"]

TIMECODE_SCALE_NS = 1_000_000  # block timestamps in milliseconds, like libavformat's
OPUS_SEEK_PRE_ROLL_NS = 80_000_000  # RFC 7845: decode 80 ms before a seek target

# Element IDs (Matroska / WebM), with their marker bits, as written.
EBML = b"\x1a\x45\xdf\xa3"
SEGMENT = b"\x18\x53\x80\x67"
INFO, TIMECODE_SCALE = b"\x15\x49\xa9\x66", b"\x2a\xd7\xb1"
MUXING_APP, WRITING_APP = b"\x4d\x80", b"\x57\x41"
TRACKS, TRACK_ENTRY = b"\x16\x54\xae\x6b", b"\xae"
CLUSTER, TIMECODE, SIMPLE_BLOCK = b"\x1f\x43\xb6\x75", b"\xe7", b"\xa3"

UNKNOWN_SIZE_8 = b"\x01\xff\xff\xff\xff\xff\xff\xff"
APP = b"visitbridge"
_BLOCK_HEAD = struct.Struct(">BhB").pack  # track number 1 (as a vint), timestamp, flags
_SHORT_BLOCK_HEAD = struct.Struct(">BHBhB").pack  # SimpleBlock ID, 2-byte size, as above


def vint_size(n: int) -> bytes:
    """An EBML data size in as few bytes as it takes (all ones is reserved: 'unknown')."""
    if n < 0x3FFF:  # every audio frame and most video frames: the per-frame path
        return bytes((0x80 | n,)) if n < 0x7F else (0x4000 | n).to_bytes(2, "big")
    length = 3
    while n >= (1 << (7 * length)) - 1:
        length += 1
    return ((1 << (7 * length)) | n).to_bytes(length, "big")


def element(element_id: bytes, payload: bytes) -> bytes:
    return element_id + vint_size(len(payload)) + payload


def uint(element_id: bytes, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def float64(element_id: bytes, value: float) -> bytes:
    return element(element_id, struct.pack(">d", value))


def ebml_header() -> bytes:
    return element(EBML, b"".join((
        uint(b"\x42\x86", 1),  # EBMLVersion
        uint(b"\x42\xf7", 1),  # EBMLReadVersion
        uint(b"\x42\xf2", 4),  # EBMLMaxIDLength
        uint(b"\x42\xf3", 8),  # EBMLMaxSizeLength
        element(b"\x42\x82", b"webm"),  # DocType
        uint(b"\x42\x87", 4),  # DocTypeVersion: CodecDelay and SeekPreRoll are v4
        uint(b"\x42\x85", 2),  # DocTypeReadVersion: SimpleBlock
    )))


def video_track(width: int, height: int) -> bytes:
    return b"".join((uint(b"\x83", 1), element(b"\x86", b"V_VP8"),  # TrackType, CodecID
                     element(b"\xe0", uint(b"\xb0", width) + uint(b"\xba", height))))


def opus_track(opus_head: bytes) -> bytes:
    return b"".join((uint(b"\x83", 2), element(b"\x86", b"A_OPUS"),
                     element(b"\x63\xa2", opus_head),  # CodecPrivate
                     uint(b"\x56\xaa", 0),  # CodecDelay: pre-skip 0, joined mid-stream
                     uint(b"\x56\xbb", OPUS_SEEK_PRE_ROLL_NS),  # SeekPreRoll
                     element(b"\xe1", float64(b"\xb5", 48000.0)  # SamplingFrequency
                             + uint(b"\x9f", opus_head[9]))))  # Channels


class WebmMuxer:
    """One segment of one track. ``start`` first, then ``add`` per frame (timestamps never
    decreasing) and ``take`` whenever the owner writes; what ``start`` and ``take`` return
    is appended to the file, in order."""

    def __init__(self, track: bytes, clock_rate: int, *, video: bool, cluster_ms: int = 1000,
                 cluster_bytes: int = 1 << 20) -> None:
        self._track = track  # the TrackEntry's content but its number, UID and lacing
        self._clock_rate = clock_rate  # of the pts given to add()
        self._video = video
        self._cluster_ms = cluster_ms
        self._cluster_bytes = cluster_bytes
        self.frames = 0
        self.last_pts = 0
        # What the next take() returns, as parts joined once there: copying each frame
        # into a growing buffer, then the cluster into another, cost more than the rest.
        self._parts: list[bytes] = []
        self._cluster_at = -1  # index in _parts of the open cluster's head (its size)
        self._cluster_size = 0
        self._cluster_time = 0  # the open cluster's timestamp
        self._cluster_end = -1  # a frame at this ms or later opens a cluster (-1: none open)

    def start(self) -> bytes:
        """The file's head: EBML header, Segment start, Info, Tracks."""
        info = uint(TIMECODE_SCALE, TIMECODE_SCALE_NS) + element(MUXING_APP, APP) \
            + element(WRITING_APP, APP)
        entry = uint(b"\xd7", 1) + uint(b"\x73\xc5", 1) + uint(b"\x9c", 0) + self._track
        return (ebml_header() + SEGMENT + UNKNOWN_SIZE_8 + element(INFO, info)
                + element(TRACKS, element(TRACK_ENTRY, entry)))

    def add(self, data: bytes, pts: int, keyframe: bool) -> None:
        """One frame, as a SimpleBlock of the open cluster (a new one when the frame opens
        one). ``pts`` is in the track's clock; the file keeps milliseconds."""
        rate = self._clock_rate
        ms = (pts * 1000 + (rate >> 1)) // rate
        self.frames += 1
        self.last_pts = pts
        parts = self._parts
        if ms >= self._cluster_end or self._cluster_end < 0 or (keyframe and self._video) \
                or self._cluster_size >= self._cluster_bytes:
            self._close_cluster()
            self._cluster_at = len(parts)
            parts.append(b"")  # the cluster's head, once its size is known
            timecode = uint(TIMECODE, ms)
            parts.append(timecode)
            self._cluster_size = len(timecode)
            self._cluster_time = ms
            self._cluster_end = ms + self._cluster_ms
        size = len(data) + 4
        if size < 0x3FFF:  # a 2-byte size: one pack for the whole block head
            parts.append(_SHORT_BLOCK_HEAD(0xA3, 0x4000 | size, 0x81, ms - self._cluster_time,
                                           0x80 if keyframe else 0))
            self._cluster_size += size + 3
        else:
            head = SIMPLE_BLOCK + vint_size(size) + _BLOCK_HEAD(
                0x81, ms - self._cluster_time, 0x80 if keyframe else 0)
            parts.append(head)
            self._cluster_size += len(head) + len(data)
        parts.append(data)

    def take(self) -> bytes:
        """The clusters completed since the last ``take``, the open one included."""
        self._close_cluster()
        parts, self._parts = self._parts, []
        return b"".join(parts)

    def _close_cluster(self) -> None:
        if self._cluster_end >= 0:
            self._parts[self._cluster_at] = CLUSTER + vint_size(self._cluster_size)
            self._cluster_end = -1
