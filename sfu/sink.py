"""One outgoing stream of a subscriber: a slot's sender, fed by a ``TrackForwarder``.

A ``Sink`` rewrites each forwarded packet with its own SSRC, payload type, sequence
numbers, timestamps and header extensions, and sends it through the subscriber's
``FastTransport``. The subscriber's RTCP about the stream arrives here: NACKs, keyframe
requests, REMB estimates and the loss its reports state go to the forwarder, reports
to aiortc's own handler too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Protocol

from aiortc import RTCRtpCodecParameters, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from sfu import glue_rtp, metrics
from sfu.fastpath import RTP_HEADER, ExtensionWriter, FastTransport, InPacket
from sfu.feedback import BitrateEstimates, WorstLoss
from sfu.layers import TemporalFilter
from sfu.rewrite import StreamRewriter


class Source(Protocol):
    """What a sink asks of the track it is fed from (a ``TrackForwarder``)."""

    estimates: BitrateEstimates
    loss: WorstLoss

    async def retransmit(self, sink: Sink, out_seqs: list[int]) -> None: ...

    async def request_keyframe(self) -> None: ...

    def detach(self, sink: Sink) -> None: ...

    def now(self) -> float: ...

    def encoding_for(self, sink: Sink) -> Source: ...

    def take_at_keyframe(self, sink: Sink) -> None: ...


VIDEO_FRAME_TICKS = 3000  # 1/30 s at 90 kHz
AUDIO_FRAME_TICKS = 960  # 20 ms at 48 kHz


class Sink:
    """One outgoing stream: the sender of one kind in one slot of a subscriber."""

    def __init__(self, sender: RTCRtpSender, kind: str) -> None:
        self.kind = kind
        self.clock_rate = 90000 if kind == "video" else 48000
        self._sender = sender
        self._original_rtcp = glue_rtp.hook_sender_rtcp(sender, self._handle_rtcp)
        self.ssrc: int = glue_rtp.sender_ssrc(sender)
        self.rewriter = StreamRewriter(
            VIDEO_FRAME_TICKS if kind == "video" else AUDIO_FRAME_TICKS,
            initial_seq=random.randrange(0x8000),
            initial_ts=random.randrange(1 << 32),
        )
        self.source: Source | None = None
        self.enabled = True  # the visit's media gate and the room's wiring
        # A watching officer's view: audio only while listening, video thinned to
        # temporal layer 0 unless the officer opened this visit (sfu.layers).
        self.paused = False
        self.layers: TemporalFilter | None = None
        self.payload_types: dict[str, int] = {}
        self.rtx_payload_type: int | None = None
        self._rtx_seq = 0
        self._extensions = ExtensionWriter({}, None)
        self._fast: FastTransport | None = None
        self.packets = 0
        self.octets = 0
        self.on_first_packet: Callable[[], None] | None = None
        # aiortc's sender sends RTCP sender reports from the moment it starts; most
        # slots never carry media (a two-party visit uses 1 of 5), so a sender's RTCP
        # loop is held back until its first packet.
        self._sending = asyncio.Event()
        glue_rtp.hold_sender_reports(sender, self._sending)

    def configure(self, codecs: list[RTCRtpCodecParameters], mid: str | None,
                  extension_ids: dict[str, int] | None = None) -> None:
        """Take the negotiated codecs (after the answer), the slot's MID and the header
        extension ids of the subscriber's transport (URI -> id)."""
        self.payload_types = {}
        for codec in codecs:
            if not is_rtx(codec):
                self.payload_types.setdefault(codec.mimeType.lower(), codec.payloadType)
        self.rtx_payload_type = glue_rtp.sender_rtx_payload_type(self._sender)
        self._extensions = ExtensionWriter(extension_ids or {}, mid)

    def _transport(self) -> FastTransport:
        fast = self._fast
        dtls = self._sender.transport
        if fast is None or fast.dtls is not dtls:
            fast = self._fast = FastTransport.of(dtls)
        return fast

    def send(self, packet: InPacket, mime: str, out_seq: int, out_ts: int,
             ntp: int | None, rtx: bool = False) -> bool:
        """Rewrite ``packet`` with this sink's numbers and send it (synchronously).

        ``ntp`` is the send time (64-bit NTP) for abs-send-time and sender reports; None
        for a retransmission.
        """
        pt = self.payload_types.get(mime)
        if pt is None:
            metrics.DROPPED_PACKETS.labels("codec_not_negotiated").inc()
            return False
        ext = self._extensions.block(None if ntp is None else (ntp >> 14) & 0x00FFFFFF,
                                     packet.audio_level)
        payload = packet.payload
        if rtx and self.rtx_payload_type is not None:
            # RFC 4588: the RTX payload starts with the original sequence number.
            header = RTP_HEADER.pack(0x90 if ext else 0x80,
                                     (packet.marker << 7) | self.rtx_payload_type,
                                     self._rtx_seq, out_ts,
                                     glue_rtp.sender_rtx_ssrc(self._sender))
            payload = out_seq.to_bytes(2, "big") + payload
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        else:
            header = RTP_HEADER.pack(0x90 if ext else 0x80, (packet.marker << 7) | pt,
                                     out_seq, out_ts, self.ssrc)
        fast = self._fast
        if fast is None or fast.dtls is not self._sender.transport:
            fast = self._transport()
        if not fast.send_rtp(header + ext + payload):
            return False
        if self.on_first_packet is not None:
            first, self.on_first_packet = self.on_first_packet, None
            first()
        if ntp is not None:
            self.packets += 1
            self.octets += len(packet.payload)
            glue_rtp.record_sent(self._sender, ntp, out_ts, self.packets, self.octets)
            if self.packets == 1:
                self._sending.set()
        return True

    async def _handle_rtcp(self, packet: object) -> None:
        source = self.source
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            metrics.NACKS.labels("from_subscriber").inc(len(packet.lost))
            if source is not None:
                await source.retransmit(self, self._within_limits(packet.lost, source.now()))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            if source is not None:
                await source.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if source is not None and source.estimates.report(self, bitrate, source.now()):
                metrics.MEDIA_LIMITS.labels("remb_floor").inc()
        else:
            await self._original_rtcp(packet)  # sender/receiver reports: stats and RTT
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                self._observe_reports(packet.reports)

    def _within_limits(self, lost: list[int], now: float) -> list[int]:
        """The NACKed numbers to resend: each once, at most ``nack_max_seqs`` of one NACK
        (the first ones), and no more than the connection's retransmission budget."""
        fast = self._transport()
        seqs = list(dict.fromkeys(lost))
        cap = fast.limits.nack_max_seqs
        if len(seqs) > cap:
            metrics.MEDIA_LIMITS.labels("nack_truncated").inc(len(seqs) - cap)
            del seqs[cap:]
        granted = fast.rtx_budget.take(len(seqs), now)
        if granted < len(seqs):
            metrics.MEDIA_LIMITS.labels("rtx_rate").inc(len(seqs) - granted)
            del seqs[granted:]
        return seqs

    def _observe_reports(self, reports: list[RtcpReceiverInfo]) -> None:
        for report in reports:
            if report.ssrc != self.ssrc:
                continue
            source = self.source
            if source is not None:
                source.loss.report(self, report.fraction_lost, source.now())
            metrics.PACKET_LOSS.observe(report.fraction_lost / 256)
            metrics.JITTER.observe(report.jitter / self.clock_rate)
            rtt = glue_rtp.sender_rtt(self._sender)
            if rtt is not None:
                metrics.RTT.observe(rtt)
