"""Fan-out of one published track to its subscribers' slots, as encoded RTP.

``TrackForwarder`` receives the publisher's packets (from the fast path, or from aiortc's
receive path, whose handler it replaces): every packet is kept in the retransmission
history and handed to each ``Sink`` (``sfu.sink``: a subscriber's slot sender), which
rewrites it with its own SSRC, payload type, sequence numbers, timestamps and MID.
Subscribers' RTCP reaches the forwarder through the sink: NACKs are answered from the
history (what never reached the server is NACKed to the publisher again), keyframe
requests are relayed to the publisher (rate limited), and audio subscribers' reported
loss goes into the receiver reports an audio publisher gets. A video publisher is sent
a REMB of the configured maximum once a second, whatever its subscribers' links carry:
the recording keeps the best it sends, and a thin subscriber is sent less instead
(``sfu.downlink``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc import RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.rtp import RtpPacket

from sfu import glue_rtp, metrics
from sfu.downlink import RateMeter
from sfu.fastpath import FastTransport, InPacket, ntp_now
from sfu.feedback import KeyframeRequests, WorstLoss
from sfu.history import PacketHistory
from sfu.keyframes import KeyframeAsker
from sfu.layers import ALL_LAYERS, TemporalFilter, keyframe_start
from sfu.limits import MissingPackets
from sfu.sequence import RESTART, SUSPECT, SequenceCheck
from sfu.simulcast import LOW, LOW_MAX_BPS, choose_encoding
from sfu.sink import Sink
from visit.tap import Tap

# A packet as the retransmission history keeps it: InPacket's fields and the mime type.
# A tuple of numbers and bytes leaves the garbage collector's lists at its first
# collection, so the thousand packets each video track keeps for seconds are not walked
# again by every collection, nor pile up into the next full one (a pause of every visit).
Kept = tuple[int, int, int, int, int, bytes, int | None, str]

log = logging.getLogger(__name__)

VP8 = "video/vp8"  # the codec whose temporal layers a sink can thin (sfu.layers)
RTP_OVERHEAD = 40  # octets of RTP, SRTP, UDP and IP headers around each payload


class TrackForwarder:
    """Forwards one publisher track (audio or video) to every attached sink."""

    # Forwarded packet/byte counters go to Prometheus in batches: every this many
    # packets, and at least every FLUSH_INTERVAL_S.
    FLUSH_PACKETS = 32
    FLUSH_INTERVAL_S = 0.25
    LOW_IDLE_TICKS = 4  # periods without a packet after which a low copy is off

    def __init__(self, receiver: RTCRtpReceiver, kind: str, max_bitrate_bps: int,
                 clock: Callable[[], float] = time.monotonic,
                 full: TrackForwarder | None = None) -> None:
        self.kind = kind
        # Simulcast (sfu.simulcast): the forwarder of the low encoding is made with the
        # full one's, shares its receiver and keeps to that one's recording gate.
        self.rid = None if full is None else LOW
        self.full: TrackForwarder = self if full is None else full
        self.low: TrackForwarder | None = None
        if full is not None:
            full.low = self
        self.waiting: list[Sink] = []  # sinks to take over at this encoding's next keyframe
        # The low copy is sent only while the publisher's uplink carries it (rtc.js): live
        # from its first media packet, not after LOW_IDLE_TICKS without one.
        self.live = full is None
        self._seen, self._idle_ticks = False, 0
        self._receiver = receiver
        self._clock = clock
        self._codecs = glue_rtp.receiver_codecs(receiver)
        self._rtx_ssrc = glue_rtp.receiver_rtx_ssrcs(receiver)
        self._stats = glue_rtp.receiver_statistics(receiver)
        # Audio too: a publishing browser resends Opus when NACKed (the offer asks it to).
        self._nacks = MissingPackets()
        self._sequences: dict[int, SequenceCheck] = {}  # per SSRC (capped by the transport)
        self._suspects_counted = 0
        self._history: PacketHistory[Kept] = PacketHistory(1024 if kind == "video" else 64)
        # payload type -> (codec, its mime type, apt if it is RTX); codecs are fixed once
        # negotiated, so this is filled on first use.
        self._pt_info: dict[int, tuple[RTCRtpCodecParameters, str, int | None]] = {}
        self.sinks: list[Sink] = []
        # Chromium answers one keyframe request per 300 ms for all of a sender's
        # encodings: one limiter for both, so a request is deferred, not swallowed.
        self.keyframes = KeyframeRequests() if full is None else full.keyframes
        self._asker = KeyframeAsker(receiver, self.keyframes, clock)
        self._max_bitrate = max_bitrate_bps
        # What arrives from the publisher: what a subscriber's link must carry to be sent
        # this encoding.
        self.rate = RateMeter(self.FLUSH_INTERVAL_S)
        self.loss = WorstLoss()  # subscribers' reported loss; told to an audio publisher
        self._loss_floor = (lambda: self.loss.worst(self._clock())) if kind == "audio" else None
        self.muted = False
        # Fail-closed recording: with a tap factory, nothing is forwarded until the tap
        # (created at the first packet, when the codec is known) says it is writing.
        self.tap_factory: Callable[[InPacket, RTCRtpCodecParameters], Tap] | None = None
        self.tap: Tap | None = None
        self.recording = False  # the visit is live: the tap records
        self.media_ssrc: int | None = None
        self._labels_packets = metrics.FORWARDED_PACKETS.labels(kind)
        self._labels_bytes = metrics.FORWARDED_BYTES.labels(kind)
        self._pending_packets = 0
        self._pending_bytes = 0
        self._fast: FastTransport | None = None
        if full is None:
            glue_rtp.hook_receiver_rtp(receiver, self.on_rtp)
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._run_periodic())

    def now(self) -> float:
        return self._clock()

    def attach(self, sink: Sink) -> None:
        for encoding in (self.full, self.full.low):
            if encoding is not None and sink in encoding.waiting:
                encoding.waiting.remove(sink)
        if sink.source is not self:
            if sink.source is not None:
                sink.source.detach(sink)
            if sink.layers is not None:  # a new stream: dropped packets counted afresh
                sink.layers = TemporalFilter(sink.layers.target, after=sink.layers)
        target = sink.layer_target(self.rid == LOW)
        if sink.layers is not None:
            sink.layers.target = target
        elif target != ALL_LAYERS:
            sink.layers = TemporalFilter(target)
        sink.source = self
        if sink not in self.sinks:
            self.sinks.append(sink)

    def encoding_for(self, sink: Sink) -> TrackForwarder:
        """The publisher's encoding ``sink`` wants: the full one, but the low copy for a
        tile of an officer's wall or a subscriber whose link is thin."""
        low = self.full.low
        return (low if low is not None and choose_encoding(not sink.wants_low(), low.live)
                == LOW else self.full)

    def take_at_keyframe(self, sink: Sink) -> None:
        """Feed ``sink`` from this encoding from its next keyframe on, asked for now; the
        encoding feeding it until then goes on, so the receiver never waits on a gap."""
        fresh = sink.source is None
        if fresh or sink.source is self:
            self.attach(sink)
        elif sink not in self.waiting:
            self.waiting.append(sink)
        if fresh or sink.source is not self:
            asyncio.ensure_future(self.request_keyframe())

    def detach(self, sink: Sink) -> None:
        if sink in self.waiting:
            self.waiting.remove(sink)
        if sink in self.sinks:
            self.sinks.remove(sink)
        self.loss.forget(sink)
        if sink.source is self:
            sink.source = None

    def bind(self, fast: FastTransport) -> None:
        """Receive this track's RTP synchronously from the publisher's transport."""
        self._fast = fast
        fast.register(self._receiver, self.handle, self.kind == "audio", self.rid)

    def close(self) -> None:
        for sink in list(self.sinks) + self.waiting:
            self.detach(sink)
        if self._fast is not None:
            self._fast.unregister(self._receiver, self.rid)
        self._task.cancel()
        self.flush_metrics()
        self._asker.close()
        if self.tap is not None:
            self.tap.close()
        # The closed peer connection is a web of reference cycles that only a full
        # collection frees; the packets kept for retransmission need not wait for it.
        self._history.clear()

    @property
    def recorded(self) -> bool:
        """What this track sends now may be shown: no recording, or being recorded."""
        return self.tap_factory is None or (self.recording and self.tap is not None
                                            and self.tap.ready)

    def received(self) -> tuple[int, int]:
        """RTP packets (received, expected) from the publisher so far: its uplink's loss."""
        streams = list(self._stats.values())
        return (sum(s.packets_received for s in streams),
                sum(s.packets_expected for s in streams if s.max_seq is not None))

    def flush_metrics(self) -> None:
        suspects = sum(check.suspects for check in self._sequences.values())
        if suspects != self._suspects_counted:
            metrics.MEDIA_LIMITS.labels("seq_jump").inc(suspects - self._suspects_counted)
            self._suspects_counted = suspects
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
        check = self._sequences.get(packet.ssrc)
        if check is None:
            self._sequences[packet.ssrc] = SequenceCheck(packet.sequence_number)
            verdict = RESTART
        else:
            verdict = check.update(packet.sequence_number)
            if verdict == SUSPECT:
                return
        if verdict == RESTART:
            stats = self._stats[packet.ssrc] = glue_rtp.stream_statistics(codec.clockRate,
                                                                          self._loss_floor)
            if apt is None:
                self._nacks.restart()
        else:
            stats = self._stats[packet.ssrc]
        stats.add(packet)  # type: ignore[arg-type]
        if apt is not None:  # RTX
            # Without a=ssrc lines (simulcast) RTX is routed by the stream it repairs.
            original_ssrc = self._rtx_ssrc.get(packet.ssrc, self.media_ssrc)
            payload = packet.payload
            if original_ssrc is None or len(payload) < 2 or apt not in self._codecs:
                return
            packet = InPacket(apt, packet.marker, int.from_bytes(payload[:2], "big"),
                              packet.timestamp, original_ssrc, payload[2:], packet.audio_level)
            codec = self._codecs[apt]
            mime = codec.mimeType.lower()
        ssrc = packet.ssrc
        if self.media_ssrc != ssrc:
            self.media_ssrc = ssrc
            self._asker.first_packet(ssrc)
        nacks = self._nacks
        if nacks.add(packet.sequence_number):
            missing = sorted(nacks.missing)
            metrics.NACKS.labels("to_publisher").inc(len(missing))
            asyncio.ensure_future(glue_rtp.send_nack(self._receiver, ssrc, missing))
        payload = packet.payload
        self.rate.octets += len(payload) + RTP_OVERHEAD
        if not payload:
            return  # padding-only probe: nothing for subscribers
        self._seen = True
        if not self.live:
            self._resume()
        if self.tap_factory is not None:
            if not self.recording:
                return  # before the visit starts: neither recorded nor forwarded
            if self.tap is None:
                self.tap = self.tap_factory(packet, codec)
            self.tap.packet(packet, time.time())
            if not self.tap.ready:
                return  # not recorded (yet): not forwarded, not kept for retransmission
        elif self.full is not self and not self.full.recorded:
            return  # the low copy of a track not (yet) recorded is not shown either
        seq = packet.sequence_number
        self._history.put(seq, (packet.payload_type, packet.marker, seq, packet.timestamp,
                                ssrc, payload, packet.audio_level, mime))
        if self.waiting and mime == VP8 and keyframe_start(payload):
            for sink in list(self.waiting):
                self.attach(sink)
        if self.muted or not self.sinks:
            return
        ntp = ntp_now()
        ts = packet.timestamp
        sent = 0
        for sink in self.sinks:
            if not sink.enabled or sink.paused:
                continue
            if sink.layers is None or mime != VP8:
                out = sink.rewriter.rewrite(self, seq, ts)
                if out is not None and sink.send(packet, mime, out[0], out[1], ntp):
                    sent += 1
            elif self._send_thinned(sink, packet, mime, ntp):
                sent += 1
        if sent:
            self._pending_packets += sent
            self._pending_bytes += sent * len(payload)
            if self._pending_packets >= self.FLUSH_PACKETS:
                self.flush_metrics()

    def _send_thinned(self, sink: Sink, packet: InPacket, mime: str, ntp: int | None) -> bool:
        """Send through the sink's temporal-layer filter (a watching officer's tile)."""
        assert sink.layers is not None
        kept = sink.layers.admit(packet.sequence_number, packet.payload)
        if kept is None:
            return False
        out = sink.rewriter.rewrite(self, kept[0], packet.timestamp)
        if out is None:
            return False
        if kept[1] is not packet.payload:
            packet = InPacket(packet.payload_type, packet.marker, packet.sequence_number,
                              packet.timestamp, packet.ssrc, kept[1], packet.audio_level)
        return sink.send(packet, mime, out[0], out[1], ntp)

    async def retransmit(self, sink: Sink, out_seqs: list[int]) -> None:
        """Resend what a subscriber NACKed from the history; what never reached the
        server is NACKed to the publisher again (its own NACK or the resent copy may have
        been lost on the publisher's uplink), and forwarded when it comes."""
        absent: list[int] = []
        for out_seq in out_seqs:
            original = sink.rewriter.original_seq(out_seq)
            thinned = sink.layers is not None and self.kind == "video"
            if thinned:
                original = sink.layers.original(original)
            entry = self._history.get(original)
            if entry is None:
                if original in self._nacks.missing:
                    absent.append(original)
                continue
            *fields, mime = entry
            packet = InPacket(*fields)
            if thinned and mime == VP8:
                if self._send_thinned(sink, packet, mime, None):
                    metrics.RETRANSMISSIONS.inc()
                continue
            out = sink.rewriter.rewrite(self, packet.sequence_number, packet.timestamp)
            if out is not None and sink.send(packet, mime, out.sequence_number,
                                             out.timestamp, None):
                metrics.RETRANSMISSIONS.inc()
        if absent and self.media_ssrc is not None:
            metrics.NACKS.labels("to_publisher").inc(len(absent))
            await glue_rtp.send_nack(self._receiver, self.media_ssrc, absent)

    async def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (``sfu.keyframes``); audio has none."""
        if self.kind == "video":
            await self._asker.request()

    def _resume(self) -> None:
        """The low encoding has come (again): the tiles fed the full one move to it."""
        self.live = True
        self.full.waiting = [sink for sink in self.full.waiting if sink.source is not self]
        self.waiting += [sink for sink in self.full.sinks if sink.wants_low()]
        if self.waiting:
            asyncio.ensure_future(self.request_keyframe())

    def _check_idle(self) -> None:
        """The low encoding has stopped: its tiles go back to the full one, thinned."""
        self._idle_ticks = 0 if self._seen else self._idle_ticks + 1
        self._seen = False
        if self.live and self._idle_ticks >= self.LOW_IDLE_TICKS:
            self.live = False
            for sink in self.sinks + self.waiting:
                self.full.take_at_keyframe(sink)

    async def _run_periodic(self) -> None:
        """Flush the batched counters; once a second (video, the full encoding: a low
        copy has no say in the publisher's budget) send the folded REMB."""
        ticks_per_remb = round(1.0 / self.FLUSH_INTERVAL_S)
        tick = 0
        while True:
            await asyncio.sleep(self.FLUSH_INTERVAL_S)
            self.flush_metrics()
            self.rate.tick()
            if self.full is not self:
                self._check_idle()
            if self.waiting:  # asked again until it comes (see self.keyframes)
                await self.request_keyframe()
            tick += 1
            if self.kind == "video" and self.rid is None and tick % ticks_per_remb == 0:
                try:
                    await self._send_remb()
                except Exception:
                    log.exception("sending REMB failed")

    async def _send_remb(self) -> None:
        if self.media_ssrc is None:
            return
        bitrate = self._max_bitrate
        ssrcs = [self.media_ssrc]
        if self.low is not None and self.low.live and self.low.media_ssrc is not None:
            # The browser fills the low encoding first: room for it on top of the full one.
            bitrate += LOW_MAX_BPS
            ssrcs.append(self.low.media_ssrc)
        await glue_rtp.send_remb(self._receiver, bitrate, ssrcs)
