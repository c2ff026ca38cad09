"""RTP packets of one track -> complete encoded frames, in order, safe to mux.

The recorder stores media exactly as received (remux, never transcode), so it must rebuild
the encoder's frames from RTP itself. aiortc's JitterBuffer is a poor fit for recording
(it stalls for seconds at 1% loss, passes cut-off frames and never releases the last frame:
see FIELD-NOTES), so this small reassembler reuses only aiortc's payload parsers.

Rules, all learned from what breaks a recording:

- A frame is emitted only when every packet from its first to its last is present with
  contiguous sequence numbers. A VP8 frame starts at a packet with S=1 and partition id 0;
  an H.264 access unit starts right after a packet that ended the previous one, or at a
  packet that opens with an SPS or access-unit delimiter; video frames end at the RTP marker
  bit. An Opus packet is a frame on its own (its marker bit means "talk spurt", not "end").
- Packets may arrive out of order: a missing packet is waited for during a short window
  (retransmissions and reordering) before it is declared lost.
- After a loss, video frames are dropped until the next keyframe: decoding a frame whose
  references are missing produces corrupt pictures. ``needs_keyframe`` says so, and the owner
  asks the publisher for a keyframe (PLI).
- Late and duplicate packets are dropped, and timestamps only ever increase: the muxer
  rejects out-of-order timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtp import RtpPacket

__all__ = ["Frame", "FrameAssembler", "h264_nal_types", "vp8_is_keyframe"]

VP8_START_CODE = b"\x9d\x01\x2a"
H264_FU_A = 28
H264_STAP_A = 24
H264_IDR = 5
# An access unit that opens with one of these is recognisable as a frame start even when
# the packet before it was lost (encoders put SPS/PPS, or an AUD, in front of every IDR).
H264_AU_OPENERS = frozenset({7, 9})  # SPS, access unit delimiter


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete encoded frame, ready to be muxed as one packet."""

    data: bytes
    rtp_timestamp_unwrapped: int
    keyframe: bool
    arrival: float  # arrival of the frame's first packet (closest to capture time)


@dataclass(slots=True)
class _Held:
    """A received packet, parsed, waiting for its frame to complete."""

    data: bytes  # depayloaded media bytes (empty for padding-only packets)
    timestamp: int  # unwrapped RTP timestamp
    start: bool  # certainly the first packet of a frame
    end: bool  # certainly the last packet of a frame
    keyframe: bool  # VP8: first packet's keyframe header; H.264: carries an IDR slice
    arrival: float
    padding: bool


def vp8_is_keyframe(data: bytes) -> bool:
    """A VP8 frame is a keyframe when the P bit (bit 0 of the first byte) is clear and the
    start code 9d 01 2a follows the 3-byte frame tag."""
    return len(data) >= 10 and not data[0] & 1 and data[3:6] == VP8_START_CODE


def h264_nal_types(payload: bytes) -> list[int]:
    """NAL unit types carried by one H.264 RTP payload (single NAL, STAP-A or FU-A)."""
    nal_type = payload[0] & 0x1F
    if nal_type == H264_FU_A:
        return [payload[1] & 0x1F]
    if nal_type != H264_STAP_A:
        return [nal_type]
    types = []
    pos = 1
    while pos + 2 < len(payload):
        size = int.from_bytes(payload[pos:pos + 2], "big")
        types.append(payload[pos + 2] & 0x1F)
        pos += 2 + size
    return types


class FrameAssembler:
    """Reassembles the RTP packets of one track (one SSRC) into complete frames.

    Not thread-safe; ``push`` is called for every packet in arrival order.
    """

    def __init__(self, kind: str, mime: str, clock_rate: int, *,
                 reorder_window_s: float = 0.05, max_held: int = 512) -> None:
        self.kind = kind
        self.clock_rate = clock_rate
        self._codec = mime.lower()
        if self._codec not in ("video/vp8", "video/h264", "audio/opus"):
            raise ValueError(f"cannot record codec {mime!r}")
        self._video = kind == "video"
        self._window = reorder_window_s
        self._max_held = max_held
        self._held: dict[int, _Held] = {}  # by unwrapped sequence number, insertion order
        self._next_seq: int | None = None  # the first packet not yet consumed
        self._max_seq = 0
        self._last_ts: int | None = None  # last unwrapped RTP timestamp seen
        self._last_emitted_ts: int | None = None
        self._prev_ended = False  # the packet before the cursor ended a frame
        self._started = False  # the cursor has moved: packets before it are late
        self._waiting_keyframe = self._video

    @property
    def needs_keyframe(self) -> bool:
        """True while video frames are being dropped until a keyframe arrives (at the start
        and after a loss). The owner polls it after ``push`` and asks the publisher for a
        keyframe (rate-limited) while it stays True."""
        return self._waiting_keyframe

    def push(self, packet: RtpPacket, arrival: float) -> list[Frame]:
        """Take one RTP packet; return the frames it completes (possibly several, when it
        fills a hole), oldest first."""
        seq = self._unwrap_seq(packet.sequence_number)
        if self._next_seq is None or (seq < self._next_seq and not self._started):
            self._next_seq = seq  # nothing consumed yet: reordering at the very start
        elif seq < self._next_seq or seq in self._held:
            return []  # late (its frame is gone) or a duplicate (retransmission)
        held = self._parse(packet, arrival)
        if held is not None:
            self._held[seq] = held
        # A malformed packet is not kept: its frame can never complete, like a lost one.
        return self._drain(arrival)

    def _unwrap_seq(self, seq: int) -> int:
        if self._next_seq is None:  # the first packet
            self._max_seq = seq
            return seq
        delta = (seq - self._max_seq) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        unwrapped = self._max_seq + delta
        self._max_seq = max(self._max_seq, unwrapped)
        return unwrapped

    def _unwrap_ts(self, ts: int) -> int:
        if self._last_ts is None:
            self._last_ts = ts
            return ts
        delta = (ts - self._last_ts) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        self._last_ts += delta
        return self._last_ts

    def _parse(self, packet: RtpPacket, arrival: float) -> _Held | None:
        timestamp = self._unwrap_ts(packet.timestamp)
        payload = packet.payload
        if not payload:  # padding-only probe: uses a sequence number, carries nothing
            return _Held(b"", timestamp, False, False, False, arrival, True)
        try:
            if self._codec == "audio/opus":
                return _Held(payload, timestamp, True, True, True, arrival, False)
            if self._codec == "video/vp8":
                descriptor, data = VpxPayloadDescriptor.parse(payload)
                start = bool(descriptor.partition_start) and descriptor.partition_id == 0
                return _Held(data, timestamp, start, bool(packet.marker),
                             start and vp8_is_keyframe(data), arrival, False)
            types = h264_nal_types(payload)
            return _Held(h264_depayload(payload), timestamp, types[0] in H264_AU_OPENERS,
                         bool(packet.marker), H264_IDR in types, arrival, False)
        except (ValueError, IndexError):
            return None

    def _drain(self, now: float) -> list[Frame]:
        frames: list[Frame] = []
        while self._held:
            if self._advance(frames):
                continue
            # Blocked on a missing packet: wait for it within the window, then give up.
            oldest = next(iter(self._held.values()))
            if now - oldest.arrival <= self._window and len(self._held) <= self._max_held:
                break
            self._skip_hole()
        return frames

    def _advance(self, frames: list[Frame]) -> bool:
        """Consume what can be consumed at the cursor; False when blocked by a hole."""
        assert self._next_seq is not None
        first = self._held.get(self._next_seq)
        if first is None:
            return False
        if first.padding:
            self._consume(self._next_seq, self._next_seq)
            self._prev_ended = True  # padding is only ever sent between frames
            return True
        if not (first.start or (self._codec == "video/h264" and self._prev_ended)):
            return False  # its frame's start is missing: wait for it, or give up
        seq = self._next_seq
        while True:
            current = self._held.get(seq)
            if current is None:
                return False  # a hole inside the frame: wait
            if current.padding or current.timestamp != first.timestamp:
                # The frame ended without its marker: drop it. Nothing is missing, so the
                # packet here is where the next frame starts.
                self._consume(self._next_seq, seq - 1)
                self._prev_ended = True
                self._lost()
                return True
            if current.end:
                break
            seq += 1
        parts = self._consume(self._next_seq, seq)
        self._prev_ended = True
        if self._codec == "video/h264":
            keyframe = any(p.keyframe for p in parts)  # the IDR may follow SPS/PPS packets
        else:
            keyframe = first.keyframe
        self._emit(frames, Frame(b"".join(p.data for p in parts), first.timestamp, keyframe,
                                 first.arrival))
        return True

    def _consume(self, first_seq: int, last_seq: int) -> list[_Held]:
        parts = [self._held.pop(s) for s in range(first_seq, last_seq + 1)]
        self._next_seq = last_seq + 1
        self._started = True
        return parts

    def _emit(self, frames: list[Frame], frame: Frame) -> None:
        last = self._last_emitted_ts
        if last is not None and frame.rtp_timestamp_unwrapped <= last:
            return  # not after the previous frame: the muxer would refuse it
        if self._waiting_keyframe:
            if not frame.keyframe:
                return
            self._waiting_keyframe = False
        self._last_emitted_ts = frame.rtp_timestamp_unwrapped
        frames.append(frame)

    def _skip_hole(self) -> None:
        """Give up on the packet the cursor waits for: drop the partial frame at the cursor,
        or move the cursor over the missing packets to the next one present."""
        assert self._next_seq is not None
        first = self._held.get(self._next_seq)
        self._prev_ended = False
        if first is None:
            self._next_seq = min(self._held)
        else:
            seq = self._next_seq
            while seq in self._held and self._held[seq].timestamp == first.timestamp:
                # If the dropped frame's last packet is here, the next one starts a frame.
                self._prev_ended = self._held.pop(seq).end
                seq += 1
            self._next_seq = seq
        self._started = True
        self._lost()

    def _lost(self) -> None:
        if self._video:
            self._waiting_keyframe = True
