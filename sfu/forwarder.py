"""Fan-out of one published track to its subscribers' slots, as encoded RTP.

``TrackForwarder`` replaces the publisher receiver's RTP handler: every packet is kept
in the retransmission history and rewritten for each ``Sink`` (a subscriber's slot
sender) with that sink's SSRC, payload type, sequence numbers, timestamps and MID.
Subscribers' RTCP reaches the forwarder through the sink: NACKs are answered from the
history, keyframe requests are relayed to the publisher (rate limited), REMB estimates
are folded into one REMB sent to the publisher once a second.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from aiortc import RTCRtpCodecParameters, RTCRtpReceiver, RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.codecs import is_rtx
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    HeaderExtensions,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
    wrap_rtx,
)

from . import metrics
from .feedback import BitrateEstimates, KeyframeRequests
from .history import PacketHistory
from .rewrite import StreamRewriter
from .tap import Tap

log = logging.getLogger(__name__)

VIDEO_FRAME_TICKS = 3000  # 1/30 s at 90 kHz
AUDIO_FRAME_TICKS = 960  # 20 ms at 48 kHz


class Sink:
    """One outgoing stream: the sender of one kind in one slot of a subscriber."""

    def __init__(self, sender: RTCRtpSender, kind: str) -> None:
        self.kind = kind
        self.clock_rate = 90000 if kind == "video" else 48000
        self._sender = sender
        self._original_rtcp = sender._handle_rtcp_packet
        sender._handle_rtcp_packet = self._handle_rtcp  # type: ignore[method-assign]
        self.ssrc: int = sender._ssrc
        self.rewriter = StreamRewriter(
            VIDEO_FRAME_TICKS if kind == "video" else AUDIO_FRAME_TICKS,
            initial_seq=random.randrange(0x8000),
            initial_ts=random.randrange(1 << 32),
        )
        self.source: TrackForwarder | None = None
        self.enabled = True
        self.payload_types: dict[str, int] = {}
        self.rtx_payload_type: int | None = None
        self._rtx_seq = 0
        self._extensions = HeaderExtensions()
        self.packets = 0
        self.octets = 0
        self.on_first_packet: Callable[[], None] | None = None

    def configure(self, codecs: list[RTCRtpCodecParameters], mid: str | None) -> None:
        """Take the negotiated codecs (after the answer) and the slot's MID."""
        self.payload_types = {}
        for codec in codecs:
            if not is_rtx(codec):
                self.payload_types.setdefault(codec.mimeType.lower(), codec.payloadType)
        self.rtx_payload_type = self._sender._RTCRtpSender__rtx_payload_type  # type: ignore[attr-defined]
        self._extensions.mid = mid

    @property
    def connected(self) -> bool:
        return self._sender.transport.state == "connected"

    async def send(self, packet: RtpPacket, mime: str, out_seq: int, out_ts: int,
                   abs_send_time: int | None, rtx: bool = False) -> bool:
        pt = self.payload_types.get(mime)
        if pt is None:
            metrics.DROPPED_PACKETS.labels("codec_not_negotiated").inc()
            return False
        out = RtpPacket(payload_type=pt, marker=packet.marker, sequence_number=out_seq,
                        timestamp=out_ts, ssrc=self.ssrc, payload=packet.payload)
        ext = self._extensions
        ext.abs_send_time = abs_send_time
        ext.audio_level = packet.extensions.audio_level
        out.extensions = ext
        if rtx and self.rtx_payload_type is not None:
            out = wrap_rtx(out, payload_type=self.rtx_payload_type,
                           sequence_number=self._rtx_seq, ssrc=self._sender._rtx_ssrc)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        transport = self._sender.transport
        try:
            await transport._send_rtp(out.serialize(transport._rtp_header_extensions_map))
        except ConnectionError:
            return False
        if self.on_first_packet is not None:
            first, self.on_first_packet = self.on_first_packet, None
            first()
        if not rtx:
            # Keep the sender's RTCP sender reports truthful (aiortc reads these).
            s = self._sender
            s._RTCRtpSender__ntp_timestamp = current_ntp_time()  # type: ignore[attr-defined]
            s._RTCRtpSender__rtp_timestamp = out_ts  # type: ignore[attr-defined]
            self.packets += 1
            self.octets += len(packet.payload)
            s._RTCRtpSender__packet_count = self.packets  # type: ignore[attr-defined]
            s._RTCRtpSender__octet_count = self.octets  # type: ignore[attr-defined]
        return True

    async def _handle_rtcp(self, packet: object) -> None:
        source = self.source
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            metrics.NACKS.labels("from_subscriber").inc(len(packet.lost))
            if source is not None:
                await source.retransmit(self, packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            if source is not None:
                await source.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if source is not None:
                source.estimates.report(self, bitrate, source.now())
        else:
            await self._original_rtcp(packet)  # sender/receiver reports: stats and RTT
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                self._observe_reports(packet.reports)

    def _observe_reports(self, reports: list[RtcpReceiverInfo]) -> None:
        for report in reports:
            if report.ssrc != self.ssrc:
                continue
            metrics.PACKET_LOSS.observe(report.fraction_lost / 256)
            metrics.JITTER.observe(report.jitter / self.clock_rate)
            rtt = self._sender._RTCRtpSender__rtt  # type: ignore[attr-defined]
            if rtt is not None:
                metrics.RTT.observe(rtt)


class TrackForwarder:
    """Forwards one publisher track (audio or video) to every attached sink."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str, max_bitrate_bps: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self._receiver = receiver
        self._clock = clock
        self._codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        self._rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        self._stats: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._nacks = NackGenerator() if kind == "video" else None
        self._history: PacketHistory[tuple[RtpPacket, str]] = PacketHistory(
            1024 if kind == "video" else 64)
        self.sinks: list[Sink] = []
        self.keyframes = KeyframeRequests()
        self.estimates = BitrateEstimates(max_bitrate_bps)
        self.muted = False
        # Fail-closed recording: with a tap factory, nothing is forwarded until the tap
        # (created at the first packet, when the codec is known) says it is writing.
        self.tap_factory: Callable[[RtpPacket, RTCRtpCodecParameters], Tap] | None = None
        self.tap: Tap | None = None
        self.recording = False  # the visit is live: the tap records
        self.media_ssrc: int | None = None
        self._keyframe_pending = False
        self._deferred: asyncio.TimerHandle | None = None
        self._labels_packets = metrics.FORWARDED_PACKETS.labels(kind)
        self._labels_bytes = metrics.FORWARDED_BYTES.labels(kind)
        self._remb_task: asyncio.Task[None] | None = None
        receiver._handle_rtp_packet = self.on_rtp  # type: ignore[method-assign]
        if kind == "video":
            self._remb_task = asyncio.ensure_future(self._run_remb())

    def now(self) -> float:
        return self._clock()

    def attach(self, sink: Sink) -> None:
        if sink.source is not None and sink.source is not self:
            sink.source.detach(sink)
        sink.source = self
        if sink not in self.sinks:
            self.sinks.append(sink)

    def detach(self, sink: Sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
        self.estimates.forget(sink)
        if sink.source is self:
            sink.source = None

    def close(self) -> None:
        for sink in list(self.sinks):
            self.detach(sink)
        if self._remb_task is not None:
            self._remb_task.cancel()
        if self._deferred is not None:
            self._deferred.cancel()
        if self.tap is not None:
            self.tap.close()

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        stats = self._stats.get(packet.ssrc)
        if stats is None:
            stats = self._stats[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self._codecs[apt]
        if self.media_ssrc is None and self._keyframe_pending:
            self.media_ssrc = packet.ssrc
            self._keyframe_pending = False
            asyncio.ensure_future(self.request_keyframe())
        self.media_ssrc = packet.ssrc
        if self._nacks is not None and self._nacks.add(packet):
            missing = sorted(self._nacks.missing)
            metrics.NACKS.labels("to_publisher").inc(len(missing))
            await self._receiver._send_rtcp_nack(packet.ssrc, missing)
        if not packet.payload:
            return  # padding-only probe: nothing for subscribers
        mime = codec.mimeType.lower()
        if self.tap_factory is not None:
            if not self.recording:
                return  # before the visit starts: neither recorded nor forwarded
            if self.tap is None:
                self.tap = self.tap_factory(packet, codec)
            self.tap.packet(packet, time.time())
            if not self.tap.ready:
                return  # not recorded (yet): not forwarded, not kept for retransmission
        self._history.put(packet.sequence_number, (packet, mime))
        if self.muted:
            return
        abs_send_time = (current_ntp_time() >> 14) & 0x00FFFFFF
        sent = 0
        for sink in self.sinks:
            if not sink.enabled:
                continue
            out = sink.rewriter.rewrite(self, packet.sequence_number, packet.timestamp)
            if out is None:
                continue
            if await sink.send(packet, mime, out.sequence_number, out.timestamp, abs_send_time):
                sent += 1
        if sent:
            self._labels_packets.inc(sent)
            self._labels_bytes.inc(sent * len(packet.payload))

    async def retransmit(self, sink: Sink, out_seqs: list[int]) -> None:
        for out_seq in out_seqs:
            entry = self._history.get(sink.rewriter.original_seq(out_seq))
            if entry is None:
                continue
            packet, mime = entry
            out = sink.rewriter.rewrite(self, packet.sequence_number, packet.timestamp)
            if out is not None and await sink.send(packet, mime, out.sequence_number,
                                                   out.timestamp, None, rtx=True):
                metrics.RETRANSMISSIONS.inc()

    async def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per interval.

        A request is never lost: before the publisher's first packet it waits for that
        packet, and inside the rate-limit interval it is sent when the interval ends.
        """
        if self.kind != "video":
            return
        if self.media_ssrc is None:
            self._keyframe_pending = True
            return
        now = self._clock()
        if self.keyframes.should_relay(now):
            metrics.KEYFRAME_REQUESTS.labels("relayed").inc()
            await self._receiver._send_rtcp_pli(self.media_ssrc)
        elif self._deferred is None:
            metrics.KEYFRAME_REQUESTS.labels("deferred").inc()
            delay = self.keyframes.wait_s(now)
            self._deferred = asyncio.get_event_loop().call_later(delay, self._send_deferred)
        else:
            metrics.KEYFRAME_REQUESTS.labels("suppressed").inc()

    def _send_deferred(self) -> None:
        self._deferred = None
        asyncio.ensure_future(self.request_keyframe())

    async def _run_remb(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.media_ssrc is None:
                continue
            bitrate = self.estimates.target(self._clock())
            rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
            if rtcp_ssrc is None:
                continue
            await self._receiver._send_rtcp(RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                fci=pack_remb_fci(bitrate, [self.media_ssrc])))
