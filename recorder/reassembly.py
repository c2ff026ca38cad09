"""RTP packets of one track -> complete encoded frames, in order, safe to mux.

The recorder stores media exactly as received (remux, never transcode), so it must rebuild
the encoder's frames from RTP itself. aiortc's JitterBuffer is a poor fit for recording
(it stalls for seconds at 1% loss, passes cut-off frames and never releases the last
frame), so this small reassembler reuses only aiortc's H.264 payload parser.

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

Shape, for the recorder's cost per packet (it runs for every packet the SFU forwards): a
packet that arrives in order is taken at once into the frame being built; only packets
that arrive ahead of a hole are held, in ``_held``, until the hole fills or is given up.
"""

from __future__ import annotations

from typing import NamedTuple

from aiortc.codecs.h264 import h264_depayload

__all__ = ["Frame", "FrameAssembler", "h264_nal_types", "vp8_is_keyframe",
           "vp8_payload"]

VP8_START_CODE = b"\x9d\x01\x2a"
H264_FU_A = 28
H264_STAP_A = 24
H264_IDR = 5
# An access unit that opens with one of these is recognisable as a frame start even when
# the packet before it was lost (encoders put SPS/PPS, or an AUD, in front of every IDR).
H264_AU_OPENERS = frozenset({7, 9})  # SPS, access unit delimiter

_MEDIA, _PADDING, _MALFORMED = 0, 1, 2
_new = tuple.__new__  # _new(Frame, (...)) skips NamedTuple's Python-level __new__


class Frame(NamedTuple):
    """One complete encoded frame, ready to be muxed as one packet."""

    data: bytes
    rtp_timestamp_unwrapped: int
    keyframe: bool
    arrival: float  # arrival of the frame's first packet (closest to capture time)


class _Packet(NamedTuple):
    """A received packet, parsed: what frame building needs of it."""

    kind: int  # _MEDIA, _PADDING (carries nothing) or _MALFORMED (unparseable)
    data: bytes  # depayloaded media bytes
    timestamp: int  # unwrapped RTP timestamp
    start: bool  # certainly the first packet of a frame
    end: bool  # certainly the last packet of a frame
    keyframe: bool  # VP8: first packet's keyframe header; H.264: carries an IDR slice
    arrival: float


def vp8_is_keyframe(data: bytes) -> bool:
    """A VP8 frame is a keyframe when the P bit (bit 0 of the first byte) is clear and the
    start code 9d 01 2a follows the 3-byte frame tag."""
    return len(data) >= 10 and not data[0] & 1 and data[3:6] == VP8_START_CODE


def vp8_payload(payload: bytes) -> tuple[bool, bytes]:
    """(starts a frame, VP8 bytes) of one RTP payload: the payload descriptor (RFC 7741
    4.2) skipped. Raises IndexError or ValueError when the descriptor is truncated."""
    first = payload[0]
    pos = 1
    if first & 0x80:  # X: extended control bits follow
        extended = payload[1]
        pos = 2
        if extended & 0x80:  # I: picture id, 7 or 15 bits
            pos += 2 if payload[2] & 0x80 else 1
        if extended & 0x40:  # L: TL0PICIDX
            pos += 1
        if extended & 0x30:  # T or K: TID/KEYIDX
            pos += 1
        if pos > len(payload):
            raise ValueError("truncated VP8 payload descriptor")
    # S=1 and partition id 0: the frame's first packet
    return first & 0x1F == 0x10, payload[pos:]


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
        codec = mime.lower()
        if codec not in ("video/vp8", "video/h264", "audio/opus"):
            raise ValueError(f"cannot record codec {mime!r}")
        self._opus = codec == "audio/opus"
        self._h264 = codec == "video/h264"
        self._window = reorder_window_s
        self._max_held = max_held
        self._held: dict[int, _Packet] = {}  # ahead of a hole, by unwrapped sequence number
        self._next_seq: int | None = None  # the cursor: the first packet not yet taken
        self._expected = -1  # the cursor's 16-bit sequence number
        self._max_seq = 0
        self._last_ts: int | None = None  # last unwrapped RTP timestamp seen
        self._last_emitted_ts: int | None = None
        self._parts: list[bytes] | None = None  # the frame being built, taken in order
        self._first: _Packet | None = None  # its first packet
        self._keyframe = False  # any of its packets carries a keyframe (H.264: an IDR)
        self._prev_ended = False  # the packet before the cursor ended a frame
        self._started = False  # the cursor has moved: packets before it are late
        self._waiting_keyframe = not self._opus

    @property
    def needs_keyframe(self) -> bool:
        """True while video frames are being dropped until a keyframe arrives (at the start
        and after a loss). The owner polls it after ``push`` and asks the publisher for a
        keyframe (rate-limited) while it stays True."""
        return self._waiting_keyframe

    def push(self, packet: object, arrival: float) -> list[Frame]:
        """Take one RTP packet (an aiortc ``RtpPacket`` or anything with its header fields
        and payload); return the frames it completes (possibly several, when it fills a
        hole), oldest first."""
        frames: list[Frame] = []
        seq = self._unwrap_seq(packet.sequence_number)  # type: ignore[attr-defined]
        if self._next_seq is None or (seq < self._next_seq and not self._started):
            self._next_seq = seq  # nothing taken yet: reordering at the very start
        elif seq < self._next_seq or seq in self._held:
            return frames  # late (its frame is gone) or a duplicate (retransmission)
        self._held[seq] = self._parse(packet, arrival)
        self._drain(arrival, frames)
        self._expected = self._next_seq & 0xFFFF
        return frames

    def push_batch(self, batch: list[tuple[object, float]]) -> list[Frame]:
        """``push`` for each (packet, arrival) of ``batch``, in order; the frames they
        complete. The common cases (a VP8 or Opus packet at the cursor, nothing held)
        are taken inline: this runs for every packet the SFU forwards."""
        if self._h264:
            frames: list[Frame] = []
            for packet, arrival in batch:
                frames += self.push(packet, arrival)
            return frames
        return self._opus_batch(batch) if self._opus else self._vp8_batch(batch)

    def _opus_batch(self, batch: list[tuple[object, float]]) -> list[Frame]:
        frames: list[Frame] = []
        held = self._held  # the same dict throughout
        # Cursor, timestamps and the frame state live in locals here; they are written
        # back around the general path (``push``), which reads and moves them.
        expected, next_seq, last_ts = self._expected, self._next_seq, self._last_ts
        last_emitted, started = self._last_emitted_ts, self._started
        for packet, arrival in batch:
            payload = packet.payload  # type: ignore[attr-defined]
            if packet.sequence_number != expected or held or not started \
                    or not payload:  # type: ignore[attr-defined]
                self._expected, self._next_seq, self._last_ts = expected, next_seq, last_ts
                self._last_emitted_ts = last_emitted
                frames += self.push(packet, arrival)
                expected, next_seq, last_ts = self._expected, self._next_seq, self._last_ts
                last_emitted, started = self._last_emitted_ts, self._started
                continue
            next_seq += 1  # type: ignore[operator]
            expected = next_seq & 0xFFFF
            delta = (packet.timestamp - last_ts) & 0xFFFFFFFF  # type: ignore[attr-defined,operator]
            last_ts += delta - 0x100000000 if delta >= 0x80000000 else delta  # type: ignore[operator]
            if last_emitted is None or last_ts > last_emitted:  # what _emit checks
                last_emitted = last_ts
                frames.append(_new(Frame, (payload, last_ts, True, arrival)))
        self._expected, self._next_seq, self._last_ts = expected, next_seq, last_ts
        self._last_emitted_ts = last_emitted
        return frames

    def _vp8_batch(self, batch: list[tuple[object, float]]) -> list[Frame]:
        frames: list[Frame] = []
        emit = self._emit
        held = self._held
        expected, next_seq, last_ts = self._expected, self._next_seq, self._last_ts
        started = self._started
        for packet, arrival in batch:
            payload = packet.payload  # type: ignore[attr-defined]
            if packet.sequence_number != expected or held or not started \
                    or len(payload) < 5:  # type: ignore[attr-defined]
                self._expected, self._next_seq, self._last_ts = expected, next_seq, last_ts
                frames += self.push(packet, arrival)
                expected, next_seq, last_ts = self._expected, self._next_seq, self._last_ts
                started = self._started
                continue
            next_seq += 1  # type: ignore[operator]
            expected = next_seq & 0xFFFF
            delta = (packet.timestamp - last_ts) & 0xFFFFFFFF  # type: ignore[attr-defined,operator]
            last_ts = ts = last_ts + (delta - 0x100000000 if delta >= 0x80000000 else delta)  # type: ignore[operator]
            # The payload descriptor (RFC 7741 4.2): Chrome and aiortc send X=1 with only
            # I=1 and a 15-bit picture ID, 4 bytes; anything else is parsed in full.
            first = payload[0]
            if first & 0x80 and payload[1] == 0x80 and payload[2] & 0x80:
                data = payload[4:]
            else:
                try:
                    data = vp8_payload(payload)[1]
                except (ValueError, IndexError):
                    self._take(_Packet(_MALFORMED, b"", ts, False, False, False, arrival),
                               frames)
                    continue
            parts = self._parts
            if first & 0x1F == 0x10:  # S=1, partition 0: a frame's first packet
                if parts is not None:  # the general path drops the unfinished frame
                    self._take(_Packet(_MEDIA, data, ts, True, bool(packet.marker),  # type: ignore[attr-defined]
                                       vp8_is_keyframe(data), arrival), frames)
                    continue
                keyframe = vp8_is_keyframe(data)
                if packet.marker:  # type: ignore[attr-defined]
                    self._prev_ended = True
                    emit(frames, _new(Frame, (data, ts, keyframe, arrival)))
                else:
                    self._parts = [data]
                    self._first = _new(_Packet, (_MEDIA, data, ts, True, False, keyframe,
                                                 arrival))
                    self._keyframe = keyframe
                continue
            if parts is None or ts != self._first.timestamp:  # type: ignore[union-attr]
                self._take(_Packet(_MEDIA, data, ts, False, bool(packet.marker),  # type: ignore[attr-defined]
                                   False, arrival), frames)
                continue
            parts.append(data)  # the next packet of the frame being built
            if packet.marker:  # type: ignore[attr-defined]
                first_packet = self._first
                self._parts = self._first = None
                self._prev_ended = True
                emit(frames, _new(Frame, (b"".join(parts), ts, self._keyframe,
                                          first_packet.arrival)))  # type: ignore[union-attr]
        self._expected, self._next_seq, self._last_ts = expected, next_seq, last_ts
        return frames

    def _unwrap_seq(self, seq: int) -> int:
        if self._next_seq is None:  # the first packet
            self._max_seq = seq
            return seq
        # push_batch moves the cursor without updating _max_seq: the cursor counts too.
        highest = max(self._max_seq, self._next_seq - 1)
        delta = (seq - highest) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        unwrapped = highest + delta
        self._max_seq = max(highest, unwrapped)
        return unwrapped

    def _parse(self, packet: object, arrival: float) -> _Packet:
        return self._parse_payload(packet, self._unwrap_ts(packet.timestamp),  # type: ignore[attr-defined]
                                   arrival)

    def _unwrap_ts(self, ts: int) -> int:
        last = self._last_ts
        if last is not None:
            delta = (ts - last) & 0xFFFFFFFF
            ts = last + (delta - 0x100000000 if delta >= 0x80000000 else delta)
        self._last_ts = ts
        return ts

    def _parse_payload(self, packet: object, timestamp: int, arrival: float) -> _Packet:
        payload = packet.payload  # type: ignore[attr-defined]
        if not payload:  # padding-only probe: uses a sequence number, carries nothing
            return _Packet(_PADDING, b"", timestamp, False, False, False, arrival)
        try:
            if self._opus:
                return _Packet(_MEDIA, payload, timestamp, True, True, True, arrival)
            if not self._h264:
                start, data = vp8_payload(payload)
                return _Packet(_MEDIA, data, timestamp, start, bool(packet.marker),  # type: ignore[attr-defined]
                               start and vp8_is_keyframe(data), arrival)
            types = h264_nal_types(payload)
            return _Packet(_MEDIA, h264_depayload(payload), timestamp,
                           types[0] in H264_AU_OPENERS, bool(packet.marker),  # type: ignore[attr-defined]
                           H264_IDR in types, arrival)
        except (ValueError, IndexError):
            return _Packet(_MALFORMED, b"", timestamp, False, False, False, arrival)

    def _drain(self, now: float, frames: list[Frame]) -> None:
        """Take held packets from the cursor on; at a hole, wait within the window (and the
        bound on held packets), then give the missing packets up."""
        held = self._held
        while held:
            seq = self._next_seq
            assert seq is not None
            packet = held.get(seq)
            if packet is not None and (self._started or self._starts_frame(packet)):
                del held[seq]
                self._next_seq = seq + 1
                self._started = True
                self._take(packet, frames)
                continue
            # Blocked by a missing packet (or, before anything was taken, by a packet whose
            # frame start may still arrive): wait for it within the window, then give up.
            if now - next(iter(held.values())).arrival <= self._window \
                    and len(held) <= self._max_held:
                return
            if packet is None:
                self._next_seq = min(held)
            else:
                del held[seq]
                self._next_seq = seq + 1
            self._started = True
            self._prev_ended = False
            self._parts = self._first = None
            self._lost()

    def _starts_frame(self, packet: _Packet) -> bool:
        return packet.start or (self._h264 and self._prev_ended)

    def _take(self, packet: _Packet, frames: list[Frame]) -> None:
        """The packet at the cursor, in order: add it to the frame being built, or start a
        frame with it, or drop it."""
        if packet.kind != _MEDIA:
            if self._parts is not None:  # a frame cannot hold padding or garbage
                self._parts = self._first = None
                self._lost()
            if packet.kind == _MALFORMED:
                self._lost()
            self._prev_ended = packet.kind == _PADDING  # padding is sent between frames
            return
        parts = self._parts
        if parts is not None:
            first = self._first
            assert first is not None
            if packet.timestamp == first.timestamp:
                parts.append(packet.data)
                self._keyframe |= packet.keyframe  # H.264: the IDR may follow SPS/PPS
                if packet.end:
                    self._parts = self._first = None
                    self._prev_ended = True
                    self._emit(frames, Frame(b"".join(parts), first.timestamp,
                                             self._keyframe, first.arrival))
                return
            # The frame ended without its marker: drop it. Nothing is missing, so this
            # packet is where the next frame starts.
            self._parts = self._first = None
            self._prev_ended = True
            self._lost()
        if not self._starts_frame(packet):  # its frame's start was lost
            self._prev_ended = packet.end
            self._lost()
            return
        self._prev_ended = packet.end
        if packet.end:
            self._emit(frames, Frame(packet.data, packet.timestamp, packet.keyframe,
                                     packet.arrival))
        else:
            self._parts = [packet.data]
            self._first = packet
            self._keyframe = packet.keyframe

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

    def _lost(self) -> None:
        if not self._opus:
            self._waiting_keyframe = True
