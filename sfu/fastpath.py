"""The synchronous media path: datagram in, datagrams out, in one event-loop callback.

aiortc receives RTP through three hops (aioice's ``StunProtocol.datagram_received`` tries
to parse every datagram as STUN, then an ``asyncio.Queue``, then the DTLS transport's
reader task) and sends through two awaited coroutines per packet. For a forwarding SFU
that is most of the CPU per packet. ``FastTransport`` (one per DTLS transport, that is
one per peer connection with max-bundle) instead:

* takes SRTP packets straight from the ICE connection's ``data_received`` callback,
  unprotects them and hands them, parsed by ``parse_rtp``, to the track's forwarder,
  synchronously; RTCP, DTLS and anything unexpected still go through aiortc's queue;
* protects and sends outgoing RTP synchronously with the UDP transport's ``sendto``.

It also reports every packet's arrival to the publisher (``sfu.congestion``: transport
feedback, every ``FEEDBACK_INTERVAL_S``), from which the browser's own estimator finds
what its uplink carries; and reads the same feedback from a subscriber's browser about
what it is sent, from which the server finds how long its downlink queues
(``sfu.queueing``).

It also holds what bounds one participant's connection (``sfu.limits``): the SSRCs it
may introduce (each new one is learnt and kept, with its receive statistics and a
receiver report block, so a flood of them is dropped once ``max_ssrcs`` are known) and
the budget of retransmissions its NACKs may ask for.

The aiortc and aioice state this needs is reached through ``sfu.glue_rtp``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice
import pylibsrtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

from sfu import glue_rtp, metrics
from sfu.aiortc_glue import install_stun_demux
from sfu.congestion import ArrivalLog
from sfu.limits import DEFAULT_LIMITS, MediaLimits, RetransmitBudget
from sfu.queueing import QueueDelay, SendTimes, feedback_delays
from sfu.simulcast import encoding_of

log = logging.getLogger(__name__)

RTP_HEADER = struct.Struct("!BBHII")
EXTENSION_HEADER = struct.Struct("!HH")
NTP_OFFSET = 2208988800  # seconds from 1900 (NTP epoch) to 1970 (Unix epoch)


def ntp_now() -> int:
    """64-bit NTP time, as ``aiortc.clock.current_ntp_time`` but without datetime."""
    return int((time.time() + NTP_OFFSET) * 4294967296.0)


@dataclass(slots=True, eq=False)
class InPacket:
    """An incoming RTP packet: what forwarding, history and the recorder read of it.

    Duck-types the ``RtpPacket`` attributes that aiortc's stream statistics and NACK
    generator and the recorder's tap (``visit.tap.TappedPacket``) read: the header fields
    and the payload. ``audio_level`` is the raw byte of the audio-level header extension
    (V bit and level, as sent on the wire) or None. One is made per packet: the
    generated ``__init__`` only stores into slots, and a packet equals only itself.
    ``transport_seq`` is the transport-wide sequence number (``sfu.congestion``) or None.
    """

    payload_type: int
    marker: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    audio_level: int | None = None
    transport_seq: int | None = None

    @classmethod
    def from_rtp(cls, packet: RtpPacket) -> InPacket:
        level = packet.extensions.audio_level
        return cls(packet.payload_type, packet.marker, packet.sequence_number,
                   packet.timestamp, packet.ssrc, packet.payload,
                   None if level is None else ((0x80 if level[0] else 0) | (level[1] & 0x7F)))


def parse_rtp(data: bytes, level_id: int = 0, seq_id: int = 0) -> InPacket | None:
    """Parse an unprotected RTP packet; None if malformed (as ``RtpPacket.parse`` raises).

    Only the audio-level extension (``level_id``, 0 for none) and the transport-wide
    sequence number (``seq_id``) are read from the header extensions: nothing else of
    them is forwarded or reported.
    """
    size = len(data)
    if size < 12:
        return None
    b0, m_pt, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    pos = 12 + 4 * (b0 & 0x0F)
    level = transport_seq = None
    if b0 & 0x10:
        if size < pos + 4:
            return None
        profile, words = EXTENSION_HEADER.unpack_from(data, pos)
        pos += 4
        end = pos + 4 * words
        if size < end:
            return None
        if level_id or seq_id:
            level, transport_seq = _find_extensions(data, pos, end, profile, level_id, seq_id)
        pos = end
    if b0 & 0x20:
        pad = data[-1]
        if not pad or pad > size - pos:
            return None
        payload = data[pos:size - pad]
    else:
        payload = data[pos:] if pos < size else b""
    return InPacket(m_pt & 0x7F, m_pt >> 7, seq, ts, ssrc, payload, level, transport_seq)


def _find_extensions(data: bytes, pos: int, end: int, profile: int, level_id: int,
                     seq_id: int) -> tuple[int | None, int | None]:
    """(audio level byte, transport-wide sequence number), each None when absent."""
    level = seq = None
    if profile == 0xBEDE:  # one-byte header elements
        while pos < end:
            first = data[pos]
            if first == 0:  # padding
                pos += 1
                continue
            x_id = first >> 4
            if x_id == 15:
                break
            length = (first & 0x0F) + 1
            if x_id == level_id and pos + 1 < end:
                level = data[pos + 1]
            elif x_id == seq_id and length == 2 and pos + 2 < end:
                seq = (data[pos + 1] << 8) | data[pos + 2]
            pos += 1 + length
    elif (profile & 0xFFF0) == 0x1000:  # two-byte header elements
        while pos + 1 < end:
            x_id = data[pos]
            if x_id == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if x_id == level_id and length and pos + 2 < end:
                level = data[pos + 2]
            elif x_id == seq_id and length == 2 and pos + 3 < end:
                seq = (data[pos + 2] << 8) | data[pos + 3]
            pos += 2 + length
    return level, seq


def extension_ids(header_extensions: list[Any]) -> dict[str, int]:
    """URI -> id, later entries winning, as aiortc's transport-wide map is configured."""
    ids: dict[str, int] = {}
    for ext in header_extensions:
        ids[ext.uri] = ext.id
    return ids


RtpHandler = Callable[[InPacket], None]


class FastTransport:
    """Synchronous RTP receive and send on one aiortc DTLS transport."""

    FEEDBACK_INTERVAL_S = 0.1  # as often as Chrome sends its own transport feedback

    @classmethod
    def of(cls, dtls: RTCDtlsTransport) -> FastTransport:
        """The transport's fast path, created on first use (kept on the transport itself:
        a reference cycle the garbage collector frees with the connection)."""
        fast: FastTransport | None = getattr(dtls, "_visitbridge_fast", None)
        if fast is None:
            fast = cls(dtls)
            dtls._visitbridge_fast = fast  # type: ignore[attr-defined]
        return fast

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        install_stun_demux()
        self.dtls = dtls
        self.connection: aioice.Connection = glue_rtp.ice_connection(dtls)
        self.level_id = 0  # id of the audio-level extension on this transport's receive side
        self.seq_id = 0  # id of the transport-wide sequence number extension (0: none)
        self._arrivals = ArrivalLog()
        # What this connection is sent, and its link's queue (sfu.queueing), handed to
        # ``on_queue`` (the subscriber's downlink control) at each transport feedback.
        self.sent = SendTimes()
        self.queue = QueueDelay()
        self.on_queue: Callable[[float], None] | None = None
        glue_rtp.hook_rtcp_data(dtls, self._rtcp_received)
        self._feedback: asyncio.TimerHandle | None = None
        self._feedback_ssrc = random.getrandbits(32)
        self._media_ssrc = 0  # a publisher SSRC: Chrome takes feedback naming one of its own
        # (receiver, simulcast rid or None) -> (handler, reads audio level); ssrc -> the
        # same, learnt from aiortc's router and the packet's rtp-stream-id
        self._handlers: dict[tuple[object, str | None], tuple[RtpHandler, bool]] = {}
        self._routes: dict[int, tuple[RtpHandler, bool]] = {}
        # the nominated pair last sent on, its UDP transport (None: not plain UDP), address
        self._pair: object | None = None
        self._udp: Any = None
        self._addr: tuple[str, int] | None = None
        self._original_data_received = glue_rtp.hook_ice_data(self.connection,
                                                              self._data_received)
        self._errors = 0
        self.received = 0  # datagrams of any kind: the room's media watchdog reads it
        self._learnt: set[int] = set()  # SSRCs routed once: at most limits.max_ssrcs
        self._ssrcs_refused = metrics.MEDIA_LIMITS.labels("ssrcs")
        self.limits = DEFAULT_LIMITS
        self.rtx_budget = RetransmitBudget(self.limits.rtx_packets_per_s, time.monotonic())

    def configure(self, limits: MediaLimits, level_id: int, seq_id: int = 0) -> None:
        """The connection's limits and the ids of its audio-level and transport-wide
        sequence number extensions (0: none)."""
        self.limits = limits
        self.level_id = level_id
        self.seq_id = seq_id
        self.rtx_budget = RetransmitBudget(limits.rtx_packets_per_s, time.monotonic())

    def register(self, receiver: object, handler: RtpHandler, audio: bool,
                 rid: str | None = None) -> None:
        """Route the receiver's RTP to ``handler``: its packets of simulcast encoding
        ``rid`` only, or (None) every other packet (no stream id, or another one)."""
        self._handlers[(receiver, rid)] = (handler, audio)
        self._routes.clear()

    def unregister(self, receiver: object, rid: str | None = None) -> None:
        self._handlers.pop((receiver, rid), None)
        self._routes.clear()

    # -- receive ------------------------------------------------------------------------

    def _data_received(self, data: bytes, component: int) -> None:
        self.received += 1
        # RTP (not RTCP: second byte 192-208) once SRTP keys exist; RFC 7983 demux.
        if (len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 209
                and (srtp := glue_rtp.srtp_receive(self.dtls)) is not None):
            ssrc = int.from_bytes(data[8:12], "big")
            route = self._routes.get(ssrc)
            if (route is None and ssrc not in self._learnt
                    and len(self._learnt) >= self.limits.max_ssrcs):
                self._ssrcs_refused.inc()
                return  # dropped before libsrtp keeps a stream context for it too
            try:
                data = srtp.unprotect(data)
            except pylibsrtp.Error:
                return  # as aiortc: replayed, unauthenticated or unknown packets are dropped
            try:
                self._on_rtp(data, ssrc, route)
            except Exception:  # never into the event loop: uvloop would close the socket
                self._errors += 1
                if self._errors <= 10:
                    log.exception("forwarding an RTP packet failed")
            return
        self._original_data_received(data, component)

    def _on_rtp(self, data: bytes, ssrc: int, route: tuple[RtpHandler, bool] | None) -> None:
        if route is None:
            route = self._learn(data, ssrc)
            if route is None:
                return
        handler, audio = route
        packet = parse_rtp(data, self.level_id if audio else 0, self.seq_id)
        if packet is not None:
            if packet.transport_seq is not None:
                self._arrived(packet.transport_seq, ssrc)
            handler(packet)

    def _arrived(self, transport_seq: int, ssrc: int) -> None:
        self._arrivals.record(transport_seq, time.monotonic_ns() // 1000)
        self._media_ssrc = ssrc
        if self._feedback is None:
            self._feedback = asyncio.get_running_loop().call_later(
                self.FEEDBACK_INTERVAL_S, self._send_feedback)

    def _send_feedback(self) -> None:
        self._feedback = None
        report = self._arrivals.feedback(self._feedback_ssrc, self._media_ssrc)
        if report is not None:
            self.send_rtcp(report)

    def _rtcp_received(self, data: bytes) -> None:
        try:  # never into aiortc's reader task: the transport would stop
            delays = feedback_delays(data, self.sent)
            if delays and self.on_queue is not None:
                self.on_queue(self.queue.report(delays, time.monotonic()))
        except Exception:
            log.exception("reading transport feedback failed")

    def close(self) -> None:
        """Stop reporting arrivals (the connection is gone)."""
        if self._feedback is not None:
            self._feedback.cancel()
            self._feedback = None

    def _learn(self, data: bytes, ssrc: int) -> tuple[RtpHandler, bool] | None:
        """An SSRC seen for the first time: let aiortc's router decide (it learns it), and
        the packet's stream id which of the receiver's simulcast encodings it carries.

        Every authenticated SSRC counts towards ``max_ssrcs``: libsrtp keeps a stream
        context for each, routed or not.
        """
        self._learnt.add(ssrc)
        routed = glue_rtp.route_rtp(self.dtls, data)
        if routed is None:
            return None
        packet, receiver = routed
        if receiver is None:
            return None
        encoding = encoding_of(packet.extensions.rtp_stream_id,
                               packet.extensions.repaired_rtp_stream_id)
        route = (self._handlers.get((receiver, encoding))
                 or self._handlers.get((receiver, None)))
        if route is None:
            # Not ours (no forwarder yet): aiortc's own handler, as without the fast path.
            asyncio.ensure_future(glue_rtp.handle_rtp(receiver, packet, int(time.time() * 1000)))
            return None
        self._routes[ssrc] = route
        return route

    # -- send ---------------------------------------------------------------------------

    def send_rtp(self, data: bytes) -> bool:
        """Protect and send one RTP packet; False if the transport cannot send."""
        return self._send(data, rtcp=False)

    def send_rtcp(self, data: bytes) -> bool:
        """Protect and send one RTCP packet; False if the transport cannot send."""
        return self._send(data, rtcp=True)

    def _send(self, data: bytes, rtcp: bool) -> bool:
        srtp = glue_rtp.srtp_send(self.dtls)
        if srtp is None:
            return False
        try:
            data = srtp.protect_rtcp(data) if rtcp else srtp.protect(data)
        except pylibsrtp.Error:
            return False
        pair = glue_rtp.nominated_pair(self.connection)
        if pair is None:
            return False
        if pair is not self._pair:
            self._pair = pair
            self._udp, self._addr = glue_rtp.udp_destination(pair)
        if self._udp is not None:
            self._udp.sendto(data, self._addr)
        else:
            asyncio.ensure_future(self._send_async(data))
        return True

    async def _send_async(self, data: bytes) -> None:
        try:
            await self.connection.sendto(data, 1)
        except ConnectionError:
            pass

