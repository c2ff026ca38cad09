"""VP8 temporal-layer selection for one outgoing stream (RFC 7741 payload descriptor).

A publisher that encodes with temporal layers (L1T3: layer 0 at a quarter of the frame
rate, 1 and 2 in between, nothing in layer 0 referring to a higher layer) lets the SFU
send a cheap stream by dropping the higher layers. The receiver must then still see a
clean stream: sequence numbers without holes where packets were dropped on purpose (a
hole is a loss it would NACK), and picture IDs that step by one per forwarded frame.
TL0PICIDX counts layer-0 frames, so dropping higher layers leaves it continuous.

Pure logic: bytes in, bytes out. A stream without temporal-layer information (no T bit)
passes through unchanged, since nothing in it can be dropped safely.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

SEQ_MOD = 1 << 16
ALL_LAYERS = 2  # the highest temporal layer of L1T3
PAUSED = -1  # a target that forwards nothing (``TemporalFilter.pause``)
HALF = SEQ_MOD // 2


class Vp8Descriptor(NamedTuple):
    """What the filter reads of a VP8 payload descriptor; offsets index the payload."""

    frame_start: bool  # S=1 and partition 0: the first packet of a frame
    picture_id: int | None
    picture_id_at: int  # offset of the picture ID (0 when absent)
    long_picture_id: bool  # 15 bits (M=1) rather than 7
    tl0picidx_at: int  # offset of TL0PICIDX (0 when absent)
    tid: int | None  # temporal layer, None without the T bit
    keyframe: bool  # only meaningful on a frame start


def parse(payload: bytes) -> Vp8Descriptor | None:
    """The descriptor of one VP8 RTP payload, or None when it is truncated."""
    if not payload:
        return None
    first = payload[0]
    pos = 1
    picture_id: int | None = None
    picture_id_at = tl0_at = 0
    long_id = False
    tid: int | None = None
    if first & 0x80:  # X: the extension byte follows
        if len(payload) < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture ID
            if len(payload) <= pos:
                return None
            picture_id_at = pos
            long_id = bool(payload[pos] & 0x80)
            if long_id:
                if len(payload) < pos + 2:
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                pos += 1
        if ext & 0x40:  # L: TL0PICIDX
            if len(payload) <= pos:
                return None
            tl0_at = pos
            pos += 1
        if ext & 0x30:  # T or K: one byte of TID, Y and KEYIDX
            if len(payload) <= pos:
                return None
            if ext & 0x20:
                tid = payload[pos] >> 6
            pos += 1
    start = bool(first & 0x10) and (first & 0x0F) == 0
    # The VP8 payload header's P bit is 0 on a keyframe.
    keyframe = start and len(payload) > pos and not payload[pos] & 0x01
    return Vp8Descriptor(start, picture_id, picture_id_at, long_id, tl0_at, tid, keyframe)


def keyframe_start(payload: bytes) -> bool:
    """Whether a VP8 payload is the first packet of a keyframe (a receiver can switch to
    this stream there)."""
    d = parse(payload)
    return d is not None and d.keyframe


class TemporalFilter:
    """Keeps the temporal layers up to a target for one subscriber's stream.

    ``target`` takes effect at the next layer-0 frame start (or keyframe), the first
    point where the receiver can follow the switch up or down without a new keyframe.
    ``admit`` returns the sequence number the stream would have had without the dropped
    packets (for ``StreamRewriter``) and the payload with its picture ID renumbered.

    A filter made ``after`` another (the sink switched to another stream: a simulcast
    encoding, or a publisher who rejoined) continues its picture IDs and TL0PICIDX, so
    the receiver sees the switch as the next frame, not as numbers going back (Chromium
    may then drop every frame until the numbers pass the old ones).
    """

    def __init__(self, target: int = 0, after: TemporalFilter | None = None) -> None:
        self.target = target
        self._after = None if after is None else (after.last_picture, after.last_tl0)
        self._picture_offset = 0
        self._tl0_offset = 0
        self.last_picture: int | None = None  # the newest forwarded picture ID, TL0PICIDX
        self.last_tl0: int | None = None
        self.layer = target  # the highest layer forwarded now
        self._highest: int | None = None  # newest source sequence number seen
        self._drops: deque[int] = deque(maxlen=1024)  # recently dropped sequence numbers
        self._dropped = 0  # packets dropped on purpose so far
        self._pictures: dict[int, int] = {}  # source picture ID -> forwarded ID
        self._skipped_pictures = 0
        self._last_picture: int | None = None  # newest source picture ID seen
        self.dropped_packets = 0

    def admit(self, seq: int, payload: bytes) -> tuple[int, bytes] | None:
        """The (compacted sequence number, payload) to forward, or None to drop."""
        d = parse(payload)
        newest = self._highest is None or (seq - self._highest) % SEQ_MOD < HALF
        if d is None or d.tid is None:
            if newest:
                self._highest = seq
            return self._compact(seq, newest), payload
        if newest and d.frame_start and (d.tid == 0 or d.keyframe or self.target == PAUSED):
            self.layer = self.target
        keep = d.tid <= self.layer
        if keep and self._after is not None:
            self._continue_numbers(payload, d)
        if newest:
            self._highest = seq
            if not keep:
                self._drops.append(seq)
                self._dropped += 1
                self.dropped_packets += 1
        if d.picture_id is not None:
            self._count_picture(d.picture_id, d.long_picture_id, keep)
        if not keep:
            return None
        return self._compact(seq, newest), self._renumber(payload, d, newest)

    def pause(self) -> None:
        """Forward nothing from the next frame start on: the receiver waits for another
        stream's keyframe (a thin link waiting for the low encoding), and what this one
        would still send only fills its queue meanwhile."""
        self.target = PAUSED

    def original(self, compacted: int) -> int:
        """The source sequence number behind a compacted one (for NACKs)."""
        seq = (compacted + self._dropped) % SEQ_MOD
        for dropped in reversed(self._drops):
            if (dropped - seq) % SEQ_MOD < HALF:
                seq = (seq - 1) % SEQ_MOD  # a drop at or after it: step back over it
        return seq

    def _compact(self, seq: int, newest: bool) -> int:
        if newest:
            return (seq - self._dropped) % SEQ_MOD
        later = sum(1 for d in self._drops if (d - seq) % SEQ_MOD < HALF)
        return (seq - self._dropped + later) % SEQ_MOD

    def _count_picture(self, picture_id: int, long_id: bool, keep: bool) -> None:
        mod = 1 << (15 if long_id else 7)
        last = self._last_picture
        if last is not None and (picture_id - last) % mod == 0 or picture_id in self._pictures:
            return
        if last is not None and (picture_id - last) % mod >= mod // 2:
            return  # a late packet of a frame never seen before: leave its number alone
        self._last_picture = picture_id
        if not keep:
            self._skipped_pictures += 1
            return
        self._pictures[picture_id] = (picture_id - self._skipped_pictures
                                      + self._picture_offset) % mod
        if len(self._pictures) > 64:
            del self._pictures[next(iter(self._pictures))]

    def _continue_numbers(self, payload: bytes, d: Vp8Descriptor) -> None:
        """At the first packet forwarded after a switch: offsets that make this stream's
        numbers follow the last ones the receiver got."""
        last_picture, last_tl0 = self._after  # type: ignore[misc]
        self._after = None
        if d.picture_id is not None and last_picture is not None:
            self._picture_offset = last_picture + 1 - d.picture_id
        if d.tl0picidx_at and last_tl0 is not None:
            self._tl0_offset = last_tl0 + 1 - payload[d.tl0picidx_at]

    def _renumber(self, payload: bytes, d: Vp8Descriptor, newest: bool) -> bytes:
        out = self._pictures.get(d.picture_id) if d.picture_id is not None else None
        tl0 = (payload[d.tl0picidx_at] + self._tl0_offset) & 0xFF if d.tl0picidx_at else None
        if newest:
            self.last_picture = out if out is not None else self.last_picture
            self.last_tl0 = tl0 if tl0 is not None else self.last_tl0
        if (out is None or out == d.picture_id) and (tl0 is None or self._tl0_offset % 256 == 0):
            return payload
        data = bytearray(payload)
        at = d.picture_id_at
        if out is not None and d.long_picture_id:
            data[at] = 0x80 | (out >> 8)
            data[at + 1] = out & 0xFF
        elif out is not None:
            data[at] = out
        if tl0 is not None:
            data[d.tl0picidx_at] = tl0
        return bytes(data)
