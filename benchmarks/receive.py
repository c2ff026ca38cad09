"""Receiving without decoding: count what the server forwards, per subscriber stream.

aiortc's receiver reassembles frames and hands them to a decoder thread; for a load
generator sharing two cores with the server that would be the largest cost on the box.
``ReceiveTap`` replaces the receiver's ``_handle_rtp_packet`` on the instance (as the
server does in sfu/forwarder.py) and only counts: packets, payload bytes, frames (video
marker bit; every audio packet), loss by sequence number, retransmissions, and the time
of the first video packet. ``disable_decoding`` stops aiortc from creating decoders or
starting decoder threads in this process at all.

Like a browser, the tap still feeds aiortc's receive statistics (so receiver reports
flow back to the server) and NACKs gaps once (so the server's retransmission path is
exercised when packets are lost), and asks for a keyframe (PLI) while it has none, as
Chrome does. It sends no REMB: aiortc's estimator is a notable CPU cost, and publishers
of pre-encoded media could not adapt their bitrate to it anyway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc import RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from sfu import glue_rtp

SEQ_MOD = 1 << 16
REORDER_S = 1.0  # a missing packet still absent after this long is lost
MAX_GAP = 3000  # a larger jump is a stream restart, not loss
KEYFRAME_WAIT_S = 0.2


class SeqTracker:
    """Loss of one RTP stream by sequence number, tolerant of reordering and RTX.

    A gap's sequence numbers wait in ``pending`` (oldest first: dicts keep insertion
    order) and count as lost once they have been missing for REORDER_S; a late or
    retransmitted packet that fills one counts as received.
    """

    __slots__ = ("highest", "received", "lost", "recovered", "duplicates", "pending")

    def __init__(self) -> None:
        self.highest: int | None = None  # extended (unwrapped) sequence number
        self.received = 0
        self.lost = 0
        self.recovered = 0
        self.duplicates = 0
        self.pending: dict[int, float] = {}

    def add(self, seq: int, now: float) -> list[int]:
        """Record one packet; return the sequence numbers newly found missing."""
        new_missing: list[int] = []
        if self.highest is None:
            self.highest = seq
            self.received += 1
            return new_missing
        delta = (seq - self.highest) % SEQ_MOD
        if delta >= SEQ_MOD // 2:
            delta -= SEQ_MOD
        ext = self.highest + delta
        if delta > 0:
            if delta - 1 > MAX_GAP:
                self.pending.clear()
            else:
                for missing in range(self.highest + 1, ext):
                    self.pending[missing] = now
                    new_missing.append(missing % SEQ_MOD)
            self.highest = ext
            self.received += 1
        elif self.pending.pop(ext, None) is not None:
            self.received += 1
            self.recovered += 1
        else:
            self.duplicates += 1
        self.expire(now)
        return new_missing

    def expire(self, now: float) -> None:
        pending = self.pending
        while pending:
            seq = next(iter(pending))
            if now - pending[seq] < REORDER_S:
                break
            del pending[seq]
            self.lost += 1


@dataclass
class TapTotals:
    packets: int = 0  # media packets, retransmissions not counted
    octets: int = 0  # their payload bytes
    frames: int = 0  # audio packets, and video packets that end a frame (marker bit)
    retransmissions: int = 0  # RTX packets
    received: int = 0  # unique media packets (after RTX), for loss
    lost: int = 0
    duplicates: int = 0

    def __sub__(self, other: TapTotals) -> TapTotals:
        return TapTotals(**{k: getattr(self, k) - getattr(other, k)
                            for k in self.__dataclass_fields__})

    def __add__(self, other: TapTotals) -> TapTotals:
        return TapTotals(**{k: getattr(self, k) + getattr(other, k)
                            for k in self.__dataclass_fields__})


class ReceiveTap:
    """Counts one receiver's RTP in place of aiortc's depacketize-and-decode path."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str) -> None:
        self.kind = kind
        self._receiver = receiver
        self._codecs = glue_rtp.receiver_codecs(receiver)
        self._rtx_ssrc = glue_rtp.receiver_rtx_ssrcs(receiver)
        self._stats = glue_rtp.receiver_statistics(receiver)
        self._seqs: dict[int, SeqTracker] = {}
        self._nack = kind == "video"
        self.packets = 0
        self.octets = 0
        self.frames = 0
        self.retransmissions = 0
        self.first_video_at: float | None = None
        self.first_keyframe_at: float | None = None
        self._last_pli_at = 0.0
        self.plis_sent = 0
        glue_rtp.hook_receiver_rtp(receiver, self.on_rtp)

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        now = time.monotonic()
        ssrc, seq = packet.ssrc, packet.sequence_number
        if is_rtx(codec):
            original = self._rtx_ssrc.get(packet.ssrc)
            if original is None or len(packet.payload) < 2:
                return
            ssrc, seq = original, int.from_bytes(packet.payload[:2], "big")
            self.retransmissions += 1
        else:
            stats = self._stats.get(ssrc)
            if stats is None:
                stats = self._stats[ssrc] = StreamStatistics(codec.clockRate)
            stats.add(packet)  # feeds aiortc's receiver reports
            self.packets += 1
            self.octets += len(packet.payload)
            if self.kind == "audio" or packet.marker:
                self.frames += 1
            if self.first_keyframe_at is None and self.kind == "video" and packet.payload:
                await self._await_keyframe(packet, now)
        tracker = self._seqs.get(ssrc)
        if tracker is None:
            tracker = self._seqs[ssrc] = SeqTracker()
        missing = tracker.add(seq, now)
        if missing and self._nack:
            await glue_rtp.send_nack(self._receiver, ssrc, missing)

    async def _await_keyframe(self, packet: RtpPacket, now: float) -> None:
        """Until the first keyframe, ask for one every KEYFRAME_WAIT_S, as Chrome does.

        A browser cannot show delta frames without their keyframe; Chrome requests one
        when nothing has been decodable for 200 ms, and repeats. Without this the client
        would wait for the publisher's next periodic keyframe, which browsers never send.
        """
        if self.first_video_at is None:
            self.first_video_at = self._last_pli_at = now
        if starts_vp8_keyframe(packet.payload):
            self.first_keyframe_at = now
        elif now - self._last_pli_at >= KEYFRAME_WAIT_S:
            self._last_pli_at = now
            self.plis_sent += 1
            await glue_rtp.send_pli(self._receiver, packet.ssrc)

    def totals(self) -> TapTotals:
        now = time.monotonic()
        received = lost = duplicates = 0
        for tracker in self._seqs.values():
            tracker.expire(now)
            received += tracker.received
            lost += tracker.lost
            duplicates += tracker.duplicates
        return TapTotals(self.packets, self.octets, self.frames, self.retransmissions,
                         received, lost, duplicates)


def starts_vp8_keyframe(payload: bytes) -> bool:
    """Whether an RTP payload is the first packet of a VP8 keyframe (RFC 7741).

    The first picture a subscriber can show is the first keyframe, not the first packet.
    """
    try:
        descriptor, data = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return False
    return (bool(descriptor.partition_start) and descriptor.partition_id == 0
            and len(data) >= 3 and not data[0] & 0x01)


class _PackOnly:
    """Stands in for aiortc's encoder: packetizes pre-encoded packets, refuses frames."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def pack(self, packet: object) -> tuple[list[bytes], int]:
        return self._inner.pack(packet)  # type: ignore[attr-defined,no-any-return]

    def encode(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("the load generator must not encode at run time")


def _refuse_decoder(*args: object, **kwargs: object) -> None:
    raise RuntimeError("the load generator must not decode")


def _no_decoder_thread(*args: object, **kwargs: object) -> None:
    """aiortc starts one decoder thread per receiver; let it end at once."""


def disable_decoding() -> None:
    """No decoder, no decoder thread, and no run-time encoder in this process."""
    original_get_encoder = aiortc.rtcrtpsender.get_encoder
    if getattr(original_get_encoder, "_visitbridge_pack_only", False):
        return

    def pack_only_encoder(codec: RTCRtpCodecParameters) -> _PackOnly:
        return _PackOnly(original_get_encoder(codec))

    pack_only_encoder._visitbridge_pack_only = True  # type: ignore[attr-defined]
    aiortc.rtcrtpsender.get_encoder = pack_only_encoder  # type: ignore[assignment]
    aiortc.rtcrtpreceiver.get_decoder = _refuse_decoder  # type: ignore[assignment]
    aiortc.rtcrtpreceiver.decoder_worker = _no_decoder_thread  # type: ignore[assignment]
