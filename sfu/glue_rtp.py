"""Thin wrappers over aiortc's and aioice's private state, for the media path.

Every private attribute read or written here is registered in ``sfu.aiortc_glue.PRIVATE``
and checked at start-up (see that module for why each hook exists). Functions called
per packet stay one attribute access deep: no checks, no allocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aioice
import aioice.ice
import pylibsrtp
from aiortc import (
    RTCDtlsTransport,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci

CONNECTED = State.CONNECTED
_StunProtocol = aioice.ice.StunProtocol

RtcpHandler = Callable[[Any], Awaitable[None]]
RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]

# -- transceiver --------------------------------------------------------------------------


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs the answer settled on, preferred first."""
    return transceiver._codecs


def negotiated_header_extensions(
        transceiver: RTCRtpTransceiver) -> list[RTCRtpHeaderExtensionParameters]:
    return transceiver._headerExtensions


# -- sender -------------------------------------------------------------------------------


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The MediaStream id announced in the SDP (``a=msid``) for this sender's track."""
    sender._stream_id = stream_id


def sender_ssrc(sender: RTCRtpSender) -> int:
    return sender._ssrc


def sender_rtx_ssrc(sender: RTCRtpSender) -> int:
    return sender._rtx_ssrc


def sender_rtt(sender: RTCRtpSender) -> float | None:
    """Round-trip time from the subscriber's last receiver report (None before one)."""
    return sender._RTCRtpSender__rtt  # type: ignore[attr-defined,no-any-return]


def hook_sender_rtcp(sender: RTCRtpSender, handler: RtcpHandler) -> RtcpHandler:
    """Route the RTCP the subscriber sends about this sender to ``handler``; returns
    aiortc's handler (statistics and RTT from sender and receiver reports)."""
    original: RtcpHandler = sender._handle_rtcp_packet
    sender._handle_rtcp_packet = handler  # type: ignore[method-assign,assignment]
    return original


def hook_sender_keyframe(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Route the keyframe requests (PLI/FIR) the sender receives to ``request``."""
    sender._send_keyframe = request  # type: ignore[method-assign]


def hold_sender_reports(sender: RTCRtpSender, sending: asyncio.Event) -> None:
    """Start the sender's RTCP loop (sender reports) only once ``sending`` is set.

    If the sender stops first, the loop ends without a report: nothing was sent, so no
    BYE is due. ``RTCRtpSender.stop`` waits for both events set here.
    """
    run_rtcp = sender._run_rtcp

    async def held() -> None:
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        try:
            await sending.wait()
        except asyncio.CancelledError:
            sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]
            return
        await run_rtcp()

    sender._run_rtcp = held  # type: ignore[method-assign]


def record_sent(sender: RTCRtpSender, ntp: int, rtp_timestamp: int, packets: int,
                octets: int) -> None:
    """Keep the sender's RTCP sender reports truthful about what was sent around it."""
    sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count = packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = octets  # type: ignore[attr-defined]


# -- receiver -----------------------------------------------------------------------------


def receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, RTCRtpCodecParameters]:
    """Payload type -> codec; aiortc's own dict, filled when the answer is applied."""
    return receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined,no-any-return]


def receiver_rtx_ssrcs(receiver: RTCRtpReceiver) -> dict[int, int]:
    """RTX SSRC -> media SSRC, as aiortc learns them."""
    return receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined,no-any-return]


def receiver_statistics(receiver: RTCRtpReceiver) -> dict[int, StreamStatistics]:
    """SSRC -> the statistics aiortc's receiver reports are built from."""
    return receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined,no-any-return]


class _LossAtLeast(StreamStatistics):
    """aiortc's receive statistics of one stream, whose receiver reports (aiortc's RTCP
    loop reads ``fraction_lost`` for each) claim at least ``floor()``."""

    def __init__(self, clock_rate: int, floor: Callable[[], int]) -> None:
        super().__init__(clock_rate)
        self._floor = floor

    @property
    def fraction_lost(self) -> int:
        own: int = StreamStatistics.fraction_lost.fget(self)  # type: ignore[attr-defined]
        return max(own, self._floor())


def stream_statistics(clock_rate: int,
                      loss_floor: Callable[[], int] | None = None) -> StreamStatistics:
    """New receive statistics for a stream (stored in ``receiver_statistics``); with
    ``loss_floor``, the receiver reports made from them claim at least that loss."""
    if loss_floor is None:
        return StreamStatistics(clock_rate)
    return _LossAtLeast(clock_rate, loss_floor)


def hook_receiver_rtp(receiver: RTCRtpReceiver, handler: RtpHandler) -> None:
    """Route the RTP aiortc receives for this receiver to ``handler``, undecoded."""
    receiver._handle_rtp_packet = handler  # type: ignore[method-assign]


def handle_rtp(receiver: RTCRtpReceiver, packet: RtpPacket,
               arrival_time_ms: int) -> Awaitable[None]:
    """aiortc's receive path for one packet (or the handler ``hook_receiver_rtp`` set)."""
    return receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)


def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> Awaitable[None]:
    return receiver._send_rtcp_nack(media_ssrc, lost)


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    return receiver._send_rtcp_pli(media_ssrc)


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, media_ssrcs: list[int]) -> None:
    """Send a REMB (the bitrate the publisher should aim for), once RTCP can be sent."""
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    if rtcp_ssrc is None:
        return
    await receiver._send_rtcp(RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
        fci=pack_remb_fci(bitrate, media_ssrcs)))


# -- DTLS transport and ICE connection ----------------------------------------------------


def ice_connection(dtls: RTCDtlsTransport) -> aioice.Connection:
    return dtls.transport._connection


def hook_ice_data(connection: aioice.Connection,
                  handler: Callable[[bytes, int], None]) -> Callable[[bytes, int], None]:
    """Take every datagram the connection receives; returns aioice's own callback."""
    original: Callable[[bytes, int], None] = connection.data_received
    connection.data_received = handler  # type: ignore[method-assign]
    return original


def hook_rtcp_data(dtls: RTCDtlsTransport, handler: Callable[[bytes], None]) -> None:
    """Show ``handler`` every unprotected RTCP datagram (compound) the transport
    receives, before aiortc parses and routes it as before."""
    original = dtls._handle_rtcp_data

    async def handle(data: bytes) -> None:
        handler(data)
        await original(data)
    dtls._handle_rtcp_data = handle  # type: ignore[method-assign]


def hook_dtls_send(dtls: RTCDtlsTransport,
                   wrap: Callable[[Callable[[bytes], Awaitable[None]]],
                                  Callable[[bytes], Awaitable[None]]]) -> None:
    """Replace the transport's (S)RTP/RTCP send coroutine by ``wrap(original)``."""
    dtls._send_rtp = wrap(dtls._send_rtp)  # type: ignore[method-assign]


def send_protected(dtls: RTCDtlsTransport, data: bytes) -> Awaitable[None]:
    """Protect one RTP or RTCP packet with the transport's SRTP keys and send it, as
    aiortc sends its own (the benchmarks' hostile clients write any packet this way)."""
    return dtls._send_rtp(data)


def srtp_receive(dtls: RTCDtlsTransport) -> pylibsrtp.Session | None:
    """The session that unprotects received SRTP; None until DTLS has connected."""
    return dtls._rx_srtp if dtls._state is CONNECTED else None


def srtp_send(dtls: RTCDtlsTransport) -> pylibsrtp.Session | None:
    """The session that protects sent RTP; None unless DTLS is connected."""
    return dtls._tx_srtp if dtls._state is CONNECTED else None


def route_rtp(dtls: RTCDtlsTransport,
              data: bytes) -> tuple[RtpPacket, RTCRtpReceiver | None] | None:
    """Parse an unprotected RTP packet and let aiortc's router pick its receiver (the
    router learns the SSRC, as on aiortc's own path); None if malformed."""
    try:
        packet = RtpPacket.parse(data, dtls._rtp_header_extensions_map)
    except ValueError:
        return None
    return packet, dtls._rtp_router.route_rtp(packet)


def nominated_pair(connection: aioice.Connection) -> aioice.ice.CandidatePair | None:
    """The candidate pair RTP goes out on (component 1); None before ICE nominates."""
    return connection._nominated.get(1)


def udp_destination(pair: aioice.ice.CandidatePair) -> tuple[Any, tuple[str, int]]:
    """(UDP transport, remote address) of a plain UDP pair, whose ``sendto`` is
    synchronous; the transport is None for TURN or TCP pairs (their send is a coroutine)."""
    protocol = pair.protocol
    udp = protocol.transport if type(protocol) is _StunProtocol else None
    return udp, pair.remote_addr
