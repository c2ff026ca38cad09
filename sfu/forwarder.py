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
from aiortc.codecs import is_rtx
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
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
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from sfu import metrics
from sfu.fastpath import RTP_HEADER, ExtensionWriter, FastTransport, InPacket, ntp_now
from sfu.feedback import BitrateEstimates, KeyframeRequests
from sfu.history import PacketHistory
from sfu.rewrite import StreamRewriter
from visit.tap import Tap

log = logging.getLogger(__name__)

VIDEO_FRAME_TICKS = 3000  # 1/30 s at 90 kHz
AUDIO_FRAME_TICKS = 960  # 20 ms at 48 kHz


class _NackGenerator(NackGenerator):
    """aiortc's NackGenerator with a shortcut for the common case, the next packet."""

    def add(self, packet: RtpPacket) -> bool:
        max_seq = self.max_seq
        if max_seq is not None and ((packet.sequence_number - max_seq) & 0xFFFF) == 1:
            self.max_seq = packet.sequence_number
            if self.missing:
                self.truncate()
            return False
        return super().add(packet)


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
        self._extensions = ExtensionWriter({}, None)
        self._fast: FastTransport | None = None
        self.packets = 0
        self.octets = 0
        self.on_first_packet: Callable[[], None] | None = None
        # aiortc's sender sends RTCP sender reports from the moment it starts; most
        # slots never carry media (a two-party visit uses 1 of 5), so a sender's RTCP
        # loop is held back until its first packet.
        self._sending = asyncio.Event()
        self._original_run_rtcp = sender._run_rtcp
        sender._run_rtcp = self._run_rtcp  # type: ignore[method-assign]

    async def _run_rtcp(self) -> None:
        s = self._sender
        s._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]  # stop() waits
        try:
            await self._sending.wait()
        except asyncio.CancelledError:
            # Stopped before it ever sent: nothing to report, no BYE needed.
            s._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]
            return
        await self._original_run_rtcp()

    def configure(self, codecs: list[RTCRtpCodecParameters], mid: str | None,
                  extension_ids: dict[str, int] | None = None) -> None:
        """Take the negotiated codecs (after the answer), the slot's MID and the header
        extension ids of the subscriber's transport (URI -> id)."""
        self.payload_types = {}
        for codec in codecs:
            if not is_rtx(codec):
                self.payload_types.setdefault(codec.mimeType.lower(), codec.payloadType)
        self.rtx_payload_type = self._sender._RTCRtpSender__rtx_payload_type  # type: ignore[attr-defined]
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
                                     self._rtx_seq, out_ts, self._sender._rtx_ssrc)
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
            # Keep the sender's RTCP sender reports truthful (aiortc reads these).
            s = self._sender
            s._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
            s._RTCRtpSender__rtp_timestamp = out_ts  # type: ignore[attr-defined]
            self.packets += 1
            self.octets += len(packet.payload)
            s._RTCRtpSender__packet_count = self.packets  # type: ignore[attr-defined]
            s._RTCRtpSender__octet_count = self.octets  # type: ignore[attr-defined]
            if self.packets == 1:
                self._sending.set()
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

    # Forwarded packet/byte counters go to Prometheus in batches: every this many
    # packets, and at least every FLUSH_INTERVAL_S.
    FLUSH_PACKETS = 32
    FLUSH_INTERVAL_S = 0.25

    def __init__(self, receiver: RTCRtpReceiver, kind: str, max_bitrate_bps: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self._receiver = receiver
        self._clock = clock
        self._codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        self._rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        self._stats: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._nacks = _NackGenerator() if kind == "video" else None
        self._history: PacketHistory[tuple[InPacket, str]] = PacketHistory(
            1024 if kind == "video" else 64)
        # payload type -> (codec, its mime type, apt if it is RTX); codecs are fixed once
        # negotiated, so this is filled on first use.
        self._pt_info: dict[int, tuple[RTCRtpCodecParameters, str, int | None]] = {}
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
        self._pending_packets = 0
        self._pending_bytes = 0
        self._fast: FastTransport | None = None
        receiver._handle_rtp_packet = self.on_rtp  # type: ignore[method-assign]
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._run_periodic())

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

    def bind(self, fast: FastTransport) -> None:
        """Receive this track's RTP synchronously from the publisher's transport."""
        self._fast = fast
        fast.register(self._receiver, self.handle, self.kind == "audio")

    def close(self) -> None:
        for sink in list(self.sinks):
            self.detach(sink)
        if self._fast is not None:
            self._fast.unregister(self._receiver)
        self._task.cancel()
        self.flush_metrics()
        if self._deferred is not None:
            self._deferred.cancel()
        if self.tap is not None:
            self.tap.close()

    def flush_metrics(self) -> None:
        if self._pending_packets:
            self._labels_packets.inc(self._pending_packets)
            self._labels_bytes.inc(self._pending_bytes)
            self._pending_packets = self._pending_bytes = 0

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """aiortc's receive path (packets not taken by the fast path)."""
        self.handle(InPacket.from_rtp(packet))

    def _payload_type(self, pt: int) -> tuple[RTCRtpCodecParameters, str, int | None] | None:
        codec = self._codecs.get(pt)
        if codec is None:
            return None
        apt: int | None = None
        if is_rtx(codec):
            value = codec.parameters.get("apt")
            apt = value if isinstance(value, int) else -1  # -1: never a negotiated type
        info = self._pt_info[pt] = (codec, codec.mimeType.lower(), apt)
        return info

    def handle(self, packet: InPacket) -> None:
        """One packet from the publisher: statistics, NACKs, tap, history, fan-out."""
        info = self._pt_info.get(packet.payload_type) or self._payload_type(packet.payload_type)
        if info is None:
            return
        codec, mime, apt = info
        stats = self._stats.get(packet.ssrc)
        if stats is None:
            stats = self._stats[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)  # type: ignore[arg-type]
        if apt is not None:  # RTX
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            payload = packet.payload
            if original_ssrc is None or len(payload) < 2 or apt not in self._codecs:
                return
            packet = InPacket(apt, packet.marker, int.from_bytes(payload[:2], "big"),
                              packet.timestamp, original_ssrc, payload[2:], packet.audio_level)
            codec = self._codecs[apt]
            mime = codec.mimeType.lower()
        ssrc = packet.ssrc
        if self.media_ssrc != ssrc:
            if self.media_ssrc is None and self._keyframe_pending:
                self._keyframe_pending = False
                self.media_ssrc = ssrc
                asyncio.ensure_future(self.request_keyframe())
            self.media_ssrc = ssrc
        nacks = self._nacks
        if nacks is not None and nacks.add(packet):  # type: ignore[arg-type]
            missing = sorted(nacks.missing)
            metrics.NACKS.labels("to_publisher").inc(len(missing))
            asyncio.ensure_future(self._receiver._send_rtcp_nack(ssrc, missing))
        payload = packet.payload
        if not payload:
            return  # padding-only probe: nothing for subscribers
        if self.tap_factory is not None:
            if not self.recording:
                return  # before the visit starts: neither recorded nor forwarded
            if self.tap is None:
                self.tap = self.tap_factory(packet, codec)  # type: ignore[arg-type]
            self.tap.packet(packet, time.time())  # type: ignore[arg-type]
            if not self.tap.ready:
                return  # not recorded (yet): not forwarded, not kept for retransmission
        seq = packet.sequence_number
        self._history.put(seq, (packet, mime))
        if self.muted or not self.sinks:
            return
        ntp = ntp_now()
        ts = packet.timestamp
        sent = 0
        for sink in self.sinks:
            if not sink.enabled:
                continue
            out = sink.rewriter.rewrite(self, seq, ts)
            if out is not None and sink.send(packet, mime, out[0], out[1], ntp):
                sent += 1
        if sent:
            self._pending_packets += sent
            self._pending_bytes += sent * len(payload)
            if self._pending_packets >= self.FLUSH_PACKETS:
                self.flush_metrics()

    async def retransmit(self, sink: Sink, out_seqs: list[int]) -> None:
        for out_seq in out_seqs:
            entry = self._history.get(sink.rewriter.original_seq(out_seq))
            if entry is None:
                continue
            packet, mime = entry
            out = sink.rewriter.rewrite(self, packet.sequence_number, packet.timestamp)
            if out is not None and sink.send(packet, mime, out.sequence_number,
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

    async def _run_periodic(self) -> None:
        """Flush the batched counters; once a second (video) send the folded REMB."""
        ticks_per_remb = round(1.0 / self.FLUSH_INTERVAL_S)
        tick = 0
        while True:
            await asyncio.sleep(self.FLUSH_INTERVAL_S)
            self.flush_metrics()
            tick += 1
            if self.kind == "video" and tick % ticks_per_remb == 0:
                try:
                    await self._send_remb()
                except Exception:
                    log.exception("sending REMB failed")

    async def _send_remb(self) -> None:
        if self.media_ssrc is None:
            return
        bitrate = self.estimates.target(self._clock())
        rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if rtcp_ssrc is None:
            return
        await self._receiver._send_rtcp(RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
            fci=pack_remb_fci(bitrate, [self.media_ssrc])))
