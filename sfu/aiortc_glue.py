"""Where the SFU reaches into aiortc's and aioice's private state: the list and its check.

aiortc always decodes what it receives and encodes what it sends; a forwarding SFU must
do neither. The media path therefore replaces, per instance, the receiver's RTP handler
and the sender's RTCP handler, and sends through the DTLS transport directly. These are
private attributes: every access to one goes through ``sfu.glue_rtp`` (the wrappers the
rest of the project calls) or this module, and every name used is listed in ``PRIVATE``.
``check_aiortc`` verifies at start-up that each one exists in the installed versions, so
an upgrade fails loudly instead of silently decoding.

The media fast path (``sfu.fastpath``) goes one level deeper, into the DTLS transport and
aioice, to receive and send RTP synchronously (no queue hop, no coroutine per packet):

* ``aioice.ice.StunProtocol.datagram_received`` is patched (class-wide, here) to hand
  RTP/RTCP datagrams (first byte 128-191, never STUN per RFC 7983) to the connection
  without the STUN parse attempt; everything else takes aioice's own path.
* per ICE connection, ``Connection.data_received`` is replaced by the fast path: SRTP
  packets are unprotected with the DTLS transport's ``_rx_srtp`` and routed by SSRC
  (learnt from aiortc's ``_rtp_router.route_rtp``, the same routing aiortc does) to
  the forwarder; RTCP, DTLS and RTP before SRTP keys exist go to aioice's queue as before.
  The DTLS transport's receive counters (only used by ``getStats``) then miss RTP.
* sending protects with ``_tx_srtp`` and calls the UDP transport's ``sendto`` of the
  nominated pair (``Connection._nominated[1]``) directly; TURN/TCP pairs keep aioice's
  coroutine. The DTLS transport's send counters (``getStats`` only) then miss RTP.
* a sender's ``_run_rtcp`` is wrapped per instance so that a slot's sender reports start
  with its first packet.

``install_codec_guard`` makes any decoder or encoder creation, and any frame handed to a
receiver's decode queue, count and fail: the counters are exported so a test (and ops)
can prove the server never decoded or encoded media.

``offer_opus_repair`` sets the Opus format parameters and feedback aiortc offers
(module state: its ``CODECS`` table) so that browsers protect their audio with Opus
in-band FEC and retransmit it on NACK; aiortc offers Opus with neither, and a browser
then sends no redundancy at all and never repairs a lost audio packet.

``offer_transport_cc`` adds transport-wide congestion control to what aiortc offers (its
``CODECS`` and ``HEADER_EXTENSIONS`` tables): the header extension that numbers a
browser's packets across the connection and the ``transport-cc`` feedback type, so a
publisher's browser estimates its uplink from the server's reports (``sfu.congestion``).

``offer_stream_ids`` adds the RTP stream id extensions a simulcast publisher needs.

``install_lazy_bitrate_estimators`` makes each receiver's ``RemoteBitrateEstimator``
lazy: aiortc builds one per video receiver (a thousand one-millisecond buckets, each a
list), yet the forwarder takes the receiver's RTP before it and a slot's receiver gets
none. Built eagerly they cost about 15 ms of the event loop per join and 6,000 objects
per peer for the garbage collector to walk.
"""

from __future__ import annotations

import asyncio
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aioice
import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc import (
    RTCDtlsTransport,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs import is_rtx
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters

from sfu.congestion import TRANSPORT_CC_URI
from sfu.simulcast import REPAIRED_RTP_STREAM_ID_URI, RTP_STREAM_ID_URI

TRANSPORT_CC = RTCRtcpFeedback(type="transport-cc")
NACK = RTCRtcpFeedback(type="nack")

SUPPORTED_AIORTC = ("1.16.",)
SUPPORTED_AIOICE = ("0.13.",)

# Every private attribute the project uses, per owning class, as written outside the
# class (name-mangled ones with their class prefix). Most exist only on instances:
# ``check_aiortc`` looks for them on a throwaway peer connection's objects.
PRIVATE: dict[type, tuple[str, ...]] = {
    RTCRtpTransceiver: ("_codecs", "_headerExtensions"),
    RTCRtpSender: (
        "_ssrc", "_rtx_ssrc", "_stream_id", "_handle_rtcp_packet", "_run_rtcp",
        "_RTCRtpSender__rtt",
        "_RTCRtpSender__ntp_timestamp", "_RTCRtpSender__rtp_timestamp",
        "_RTCRtpSender__packet_count", "_RTCRtpSender__octet_count",
        "_RTCRtpSender__rtcp_started", "_RTCRtpSender__rtcp_exited",
        "_send_keyframe",  # benchmarks' clients only
    ),
    RTCRtpReceiver: (
        "_handle_rtp_packet", "_send_rtcp", "_send_rtcp_pli", "_send_rtcp_nack",
        "_RTCRtpReceiver__codecs", "_RTCRtpReceiver__rtx_ssrc",
        "_RTCRtpReceiver__remote_streams", "_RTCRtpReceiver__rtcp_ssrc",
        "_RTCRtpReceiver__decoder_queue",
    ),
    RTCDtlsTransport: (
        "_state", "_rx_srtp", "_tx_srtp", "_rtp_router", "_rtp_header_extensions_map",
        "_handle_rtcp_data",
        "_send_rtp",  # the benchmarks only: the MediaRelay baseline, hostile clients
    ),
    RTCIceTransport: ("_connection",),
    aioice.Connection: ("_nominated",),
}


def _public_hooks_missing() -> list[str]:
    """Public but undocumented names the fast path relies on (checked on the class)."""
    wanted: list[tuple[Any, str, str]] = [
        (aioice.ice.StunProtocol, "datagram_received", "StunProtocol"),
        (aioice.Connection, "data_received", "Connection"),
        (aioice.Connection, "sendto", "Connection"),
        (aioice.ice.CandidatePair, "remote_addr", "CandidatePair"),
        (aiortc.rtcdtlstransport.RtpRouter, "route_rtp", "RtpRouter"),
        (aiortc.rtcdtlstransport.State, "CONNECTED", "State"),
        (aiortc.rtcrtpreceiver, "RemoteBitrateEstimator", "rtcrtpreceiver"),
        (RemoteBitrateEstimator, "add", "RemoteBitrateEstimator"),
        (aiortc.rtcrtpreceiver.StreamStatistics, "fraction_lost", "StreamStatistics"),
    ]
    missing = [f"{label}.{name}" for cls, name, label in wanted if not hasattr(cls, name)]
    if "protocol" not in vars(aioice.ice.CandidatePair(None, None)):  # type: ignore[arg-type]
        missing.append("CandidatePair.protocol")
    return missing


def probe_instances() -> dict[type, object | None]:
    """One object of each registered class, from a throwaway peer connection (never
    connected, nothing to close): where attributes set per instance are looked up.

    aiortc binds futures to the current event loop while building one, so it is built
    in a loop of its own, on a thread of its own: the caller's loop, running or not,
    is left alone.
    """
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, _probe()).result()


async def _probe() -> dict[type, object | None]:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("audio")
    dtls = transceiver.sender.transport
    ice = dtls.transport
    return {
        RTCRtpTransceiver: transceiver,
        RTCRtpSender: transceiver.sender,
        RTCRtpReceiver: transceiver.receiver,
        RTCDtlsTransport: dtls,
        RTCIceTransport: ice,
        aioice.Connection: getattr(ice, "_connection", None),
    }


def missing_private(instances: dict[type, object | None]) -> list[str]:
    """``Class.name`` of every registered private attribute the installed versions lack."""
    missing = []
    for cls, names in PRIVATE.items():
        instance = instances[cls]
        for name in names:
            if not hasattr(cls, name) and (instance is None or not hasattr(instance, name)):
                missing.append(f"{cls.__name__}.{name}")
    return missing


def check_aiortc() -> None:
    """Fail start-up, naming every missing hook, unless the installed versions fit."""
    if not aiortc.__version__.startswith(SUPPORTED_AIORTC):
        raise RuntimeError(
            f"aiortc {aiortc.__version__} is not supported (need {SUPPORTED_AIORTC}); "
            "the SFU uses its private hooks, see sfu/aiortc_glue.py"
        )
    if not aioice.__version__.startswith(SUPPORTED_AIOICE):
        raise RuntimeError(
            f"aioice {aioice.__version__} is not supported (need {SUPPORTED_AIOICE}); "
            "the SFU's media fast path uses its private state, see sfu/aiortc_glue.py"
        )
    try:
        instances = probe_instances()
    except Exception as error:
        raise RuntimeError(f"aiortc: cannot build a peer connection to check: {error!r}; "
                           "see sfu/aiortc_glue.py") from error
    missing = missing_private(instances) + _public_hooks_missing()
    if missing:
        raise RuntimeError(f"aiortc/aioice lack hooks the SFU needs: {', '.join(missing)}")


class CodecGuard:
    """Counts (and refuses) every attempt to decode or encode media on the server."""

    def __init__(self) -> None:
        self.codec_instances = 0
        self.decoder_feeds = 0


guard = CodecGuard()


class _RefusingQueue(queue.Queue):  # type: ignore[type-arg]
    """Stands in for a receiver's decoder queue: a frame put here would be decoded."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            guard.decoder_feeds += 1
            raise RuntimeError("the SFU must not decode media")


def _refuse_codec(*args: object, **kwargs: object) -> None:
    guard.codec_instances += 1
    raise RuntimeError("the SFU must not decode or encode media")


def _no_decoder_thread(*args: object, **kwargs: object) -> None:
    """Replaces aiortc's decoder thread body: the thread ends at once instead of idling."""


class _LazyBitrateEstimator:
    """aiortc's receive-side estimator, built at its first packet (if one ever comes)."""

    __slots__ = ("_real",)

    def __init__(self) -> None:
        self._real: RemoteBitrateEstimator | None = None

    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int,
            ssrc: int) -> tuple[int, list[int]] | None:
        if self._real is None:
            self._real = RemoteBitrateEstimator()
        return self._real.add(arrival_time_ms, abs_send_time, payload_size, ssrc)


def install_codec_guard() -> None:
    aiortc.rtcrtpreceiver.get_decoder = _refuse_codec  # type: ignore[assignment]
    aiortc.rtcrtpsender.get_encoder = _refuse_codec  # type: ignore[assignment]
    aiortc.rtcrtpreceiver.decoder_worker = _no_decoder_thread  # type: ignore[assignment]


# What every Opus m-line of the server's offer asks of the browser's encoder (RFC 7587):
# 10 ms frames allowed, in-band FEC on (a packet carries a low-rate copy of the one
# before, which the receiver decodes when that one is lost), and DTX off, stated rather
# than left to the default: with DTX a quiet stretch is one packet per 400 ms, so one
# loss there costs most of a second (and the recording a hole), and no next packet is
# near to carry the lost one's FEC.
OPUS_FMTP: dict[str, int] = {"minptime": 10, "useinbandfec": 1, "usedtx": 0}


def offer_opus_repair() -> None:
    """Offer Opus with ``OPUS_FMTP`` and NACK feedback.

    The SFU forwards the packets unchanged, so the FEC the browser adds reaches every
    receiver, and the recording, as it was sent. FEC only helps where the sender hears of
    loss, and a publisher hears only of its own uplink's: with ``a=rtcp-fb:<pt> nack`` a
    receiving browser NACKs the audio lost on its downlink (its jitter buffer waits for
    the retransmission, which the server sends from its history), and a publishing
    browser keeps its audio to resend what the server NACKs.
    """
    opus = [c for c in aiortc.codecs.CODECS["audio"] if c.mimeType.lower() == "audio/opus"]
    if not opus:
        raise RuntimeError("aiortc offers no Opus codec to configure; see sfu/aiortc_glue.py")
    for codec in opus:
        codec.parameters.update(OPUS_FMTP)
        if NACK not in codec.rtcpFeedback:
            codec.rtcpFeedback.append(NACK)


# The extension's id: one no other offered extension uses (aiortc's ids are shared by
# audio and video under BUNDLE).
TRANSPORT_CC_ID = 5


def offer_transport_cc() -> None:
    """Offer the transport-wide sequence number on every m-line and ``transport-cc``
    feedback for every codec, once (aiortc offers neither)."""
    for kind in ("audio", "video"):
        extensions = aiortc.codecs.HEADER_EXTENSIONS[kind]
        if any(e.id == TRANSPORT_CC_ID and e.uri != TRANSPORT_CC_URI for e in extensions):
            raise RuntimeError(f"aiortc offers another {kind} extension with id "
                               f"{TRANSPORT_CC_ID}; see sfu/aiortc_glue.py")
        if all(e.uri != TRANSPORT_CC_URI for e in extensions):
            extensions.append(RTCRtpHeaderExtensionParameters(id=TRANSPORT_CC_ID,
                                                              uri=TRANSPORT_CC_URI))
        for codec in aiortc.codecs.CODECS[kind]:
            if not is_rtx(codec) and TRANSPORT_CC not in codec.rtcpFeedback:
                codec.rtcpFeedback.append(TRANSPORT_CC)


# The ids of the simulcast stream-id extensions: free in aiortc's tables, like the above.
STREAM_ID_IDS = {RTP_STREAM_ID_URI: 10, REPAIRED_RTP_STREAM_ID_URI: 11}


def offer_stream_ids() -> None:
    """Offer the rtp-stream-id and repaired-rtp-stream-id extensions on video m-lines
    (aiortc offers neither): a simulcast publisher names each encoding's packets with
    them (``sfu.simulcast``), and aiortc then parses them on what it receives."""
    extensions = aiortc.codecs.HEADER_EXTENSIONS["video"]
    for uri, ext_id in STREAM_ID_IDS.items():
        if any(e.id == ext_id and e.uri != uri for e in extensions):
            raise RuntimeError(f"aiortc offers another video extension with id {ext_id}; "
                               "see sfu/aiortc_glue.py")
        if all(e.uri != uri for e in extensions):
            extensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


def install_lazy_bitrate_estimators() -> None:
    aiortc.rtcrtpreceiver.RemoteBitrateEstimator = _LazyBitrateEstimator  # type: ignore[misc]


def guard_receiver(receiver: RTCRtpReceiver) -> None:
    """Swap the receiver's decoder queue for one that refuses frames."""
    receiver._RTCRtpReceiver__decoder_queue = _RefusingQueue()  # type: ignore[attr-defined]


def allow_loopback_ice() -> None:
    """Let ICE gather 127.0.0.1: for tests and sandboxes only (off in production).

    aioice drops loopback addresses and has no setting for it.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "_visitbridge_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    with_loopback._visitbridge_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback  # type: ignore[assignment]


def install_stun_demux() -> None:
    """Hand RTP/RTCP datagrams to the ICE connection without trying to parse them as STUN.

    aioice parses every datagram as STUN and takes the ``ValueError`` as "data". The first
    byte tells them apart (RFC 7983): 128-191 is RTP/RTCP, STUN starts with 0-3.
    """
    stun_protocol = aioice.ice.StunProtocol
    original = stun_protocol.datagram_received
    if getattr(original, "_visitbridge_demux", False):
        return

    def datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192:
            self.receiver.data_received(data, self.local_candidate.component)
            return
        original(self, data, addr)

    datagram_received._visitbridge_demux = True  # type: ignore[attr-defined]
    stun_protocol.datagram_received = datagram_received  # type: ignore[method-assign]
