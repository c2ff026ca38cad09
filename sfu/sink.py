"""One outgoing stream of a subscriber: a slot's sender, fed by a ``TrackForwarder``.

A ``Sink`` rewrites each forwarded packet with its own SSRC, payload type, sequence
numbers, timestamps and header extensions, and sends it through the subscriber's
``FastTransport``. The subscriber's RTCP about the stream arrives here: NACKs and keyframe
requests go to the forwarder; REMB estimates, NACK counts and the loss its reports state
go to the sink's ``Downlink`` (what the subscriber's link carries, ``sfu.downlink``), the
loss to the forwarder too, and reports to aiortc's own handler as well.
"""

from __future__ import annotations

import asyncio
import random
import time
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
from sfu.downlink import Downlink, RateMeter
from sfu.extensions import ExtensionWriter
from sfu.fastpath import RTP_HEADER, FastTransport, InPacket, ntp_now
from sfu.feedback import WorstLoss
from sfu.layers import ALL_LAYERS, TemporalFilter
from sfu.rewrite import StreamRewriter


class Source(Protocol):
    """What a sink asks of the track it is fed from (a ``TrackForwarder``)."""

    loss: WorstLoss
    full: Source  # the full encoding of the same track (itself, unless the low copy)
    rate: RateMeter  # what arrives from the publisher

    async def retransmit(self, sink: Sink, out_seqs: list[int]) -> None: ...

    async def request_keyframe(self) -> None: ...

    def detach(self, sink: Sink) -> None: ...

    def attach(self, sink: Sink) -> None: ...

    def now(self) -> float: ...

    def encoding_for(self, sink: Sink) -> Source: ...

    def take_at_keyframe(self, sink: Sink) -> None: ...


VIDEO_FRAME_TICKS = 3000  # 1/30 s at 90 kHz
AUDIO_FRAME_TICKS = 960  # 20 ms at 48 kHz
PADDING = bytes(254) + b"\xff"  # the most one RTP packet carries (its last octet counts it)
UDP_OVERHEAD = 38  # octets of SRTP, UDP and IP around an RTP packet


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
        self.wants_full = True
        self.layers: TemporalFilter | None = None
        # What the subscriber's link carries: its latest REMB (bits/s, when) and whether
        # its video is thinned to it.
        self.downlink = Downlink()
        self.remb: tuple[int, float] | None = None
        self.nacked = 0  # packets the subscriber NACKed on this stream so far
        self._last = (0, 0)  # payload type and timestamp of the last packet (for pad())
        self.payload_types: dict[str, int] = {}
        self.rtx_types: dict[int, int] = {}  # payload type -> the RTX type repairing it
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
        # Known from the answer (aiortc's sender learns one RTX type, of its preferred
        # codec, only once it starts).
        self.rtx_types = {apt: c.payloadType for c in codecs if is_rtx(c)
                          and isinstance(apt := c.parameters.get("apt"), int)}
        self._extensions = ExtensionWriter(extension_ids or {}, mid)

    def _transport(self) -> FastTransport:
        fast = self._fast
        dtls = self._sender.transport
        if fast is None or fast.dtls is not dtls:
            fast = self._fast = FastTransport.of(dtls)
        return fast

    def send(self, packet: InPacket, mime: str, out_seq: int, out_ts: int,
             ntp: int | None) -> bool:
        """Rewrite ``packet`` with this sink's numbers and send it (synchronously).

        ``ntp`` is the send time (64-bit NTP) for abs-send-time and sender reports; None
        for a retransmission, which goes out as the original did: a receiving browser
        then counts the packet as received in the stream's own statistics (resent over
        RTX, it would stay lost in them). RTX carries only ``pad``'s probes.
        """
        pt = self.payload_types.get(mime)
        if pt is None:
            metrics.DROPPED_PACKETS.labels("codec_not_negotiated").inc()
            return False
        fast = self._fast
        if fast is None or fast.dtls is not self._sender.transport:
            fast = self._transport()
        ext = self._extensions.block(None if ntp is None else (ntp >> 14) & 0x00FFFFFF,
                                     packet.audio_level, self._transport_seq(fast))
        header = RTP_HEADER.pack(0x90 if ext else 0x80, (packet.marker << 7) | pt, out_seq,
                                 out_ts, self.ssrc)
        if not fast.send_rtp(header + ext + packet.payload):
            return False
        if self.on_first_packet is not None:
            first, self.on_first_packet = self.on_first_packet, None
            first()
        if ntp is not None:
            self._last = (pt, out_ts)
            self.packets += 1
            self.octets += len(packet.payload)
            glue_rtp.record_sent(self._sender, ntp, out_ts, self.packets, self.octets)
            if self.packets == 1:
                self._sending.set()
        return True

    def _transport_seq(self, fast: FastTransport) -> int | None:
        """The packet's transport-wide sequence number, when the subscriber reports
        arrivals (``sfu.queueing``)."""
        if self._extensions.seq is None:
            return None
        return fast.sent.stamp(time.monotonic_ns() // 1000)

    async def _handle_rtcp(self, packet: object) -> None:
        source = self.source
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            metrics.NACKS.labels("from_subscriber").inc(len(packet.lost))
            self.nacked += len(packet.lost)
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
            floor = self._transport().limits.remb_floor_bps
            if bitrate < floor:
                metrics.MEDIA_LIMITS.labels("remb_floor").inc()
            if source is not None:
                self.remb = (bitrate, source.now())
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
                if self.kind == "video" and not self.downlink.thin and self.downlink.loss(
                        report.packets_lost, report.highest_sequence, source.now()):
                    self.reconsider()
            metrics.PACKET_LOSS.observe(report.fraction_lost / 256)
            metrics.JITTER.observe(report.jitter / self.clock_rate)
            rtt = glue_rtp.sender_rtt(self._sender)
            if rtt is not None:
                metrics.RTT.observe(rtt)

    def reconsider(self) -> None:
        """What this sink wants changed: the stream it gets now thinned (or not) at once,
        and the encoding it now wants from that one's next keyframe. A link just found
        flooded gets no video until then: even layer 0 of the full encoding may be more
        than it carries, and the queue delays the audio behind it. (Loss alone may be
        the publisher's: layer 0 goes on meanwhile.)"""
        source = self.source
        if source is not None:
            source.attach(self)
            wanted = source.encoding_for(self)
            wanted.take_at_keyframe(self)
            if (self.downlink.flooded and self.source is not wanted
                    and self.layers is not None):
                self.layers.pause()

    def wants_low(self) -> bool:
        """An officer's tile, or a subscriber whose link is thin: the low encoding while
        the publisher sends one."""
        return not self.wants_full or self.downlink.thin

    def layer_target(self, low: bool) -> int:
        """The highest temporal layer to forward of the low or the full encoding: layer 0
        for a tile, and of the full encoding for a thin link (the low one whole)."""
        if not self.wants_full or (self.downlink.thin and not low):
            return 0
        return ALL_LAYERS

    def pad(self, octets: int) -> int:
        """Send about ``octets`` of padding-only RTX packets (``sfu.downlink``'s probes):
        nothing a receiver decodes or takes for a lost packet repaired, so what a link
        still too thin drops shows as loss of the media around them; returns the octets
        sent."""
        pt = self.rtx_types.get(self._last[0])
        if pt is None or not self.packets:
            return 0
        ssrc = glue_rtp.sender_rtx_ssrc(self._sender)
        fast = self._transport()
        sent = 0
        while sent < octets:
            ext = self._extensions.block((ntp_now() >> 14) & 0x00FFFFFF, None,
                                         self._transport_seq(fast))
            header = RTP_HEADER.pack(0xB0 if ext else 0xA0, pt, self._rtx_seq,
                                     self._last[1], ssrc)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            if not fast.send_rtp(header + ext + PADDING):
                break
            sent += len(header) + len(ext) + len(PADDING) + UDP_OVERHEAD
        return sent
