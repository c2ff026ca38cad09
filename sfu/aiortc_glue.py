"""Where the SFU reaches into aiortc's private state, in one place.

aiortc always decodes what it receives and encodes what it sends; a forwarding SFU must
do neither. The media path therefore replaces, per instance, the receiver's RTP handler
and the sender's RTCP handler, and sends through the DTLS transport directly. These are
private, name-mangled attributes: ``check_aiortc`` verifies at start-up that every one
exists in the installed version, so an upgrade fails loudly instead of silently decoding.

The media fast path (``sfu.fastpath``) goes one level deeper, into the DTLS transport and
aioice, to receive and send RTP synchronously (no queue hop, no coroutine per packet):

* ``aioice.ice.StunProtocol.datagram_received`` is patched (class-wide) to hand RTP/RTCP
  datagrams (first byte 128-191, never STUN per RFC 7983) to the connection without the
  STUN parse attempt; everything else takes aioice's own path.
* per ICE connection, ``Connection.data_received`` is replaced by the fast path: SRTP
  packets are unprotected with the DTLS transport's ``_rx_srtp`` and routed by SSRC
  (learnt from aiortc's ``_rtp_router.route_rtp``, the same routing aiortc does) to
  the forwarder; RTCP, DTLS and RTP before SRTP keys exist go to aioice's queue as before.
  The DTLS transport's receive counters (only used by ``getStats``) then miss RTP.
* sending protects with ``_tx_srtp`` and calls the UDP transport's ``sendto`` of the
  nominated pair (``Connection._nominated[1]``) directly; TURN/TCP pairs keep aioice's
  coroutine. The DTLS transport's send counters (``getStats`` only) then miss RTP.
* a sender's ``_run_rtcp`` is wrapped per instance so that a slot's sender reports start
  with its first packet (it sets ``__rtcp_started``/``__rtcp_exited`` itself when
  stopped before, as ``RTCRtpSender.stop`` waits for both).
* ``sfu.peer`` reads each transceiver's negotiated ``_headerExtensions`` to serialize
  MID, abs-send-time and audio level itself.

``install_codec_guard`` makes any decoder or encoder creation, and any frame handed to a
receiver's decode queue, count and fail: the counters are exported so a test (and ops)
can prove the server never decoded or encoded media.
"""

from __future__ import annotations

import queue
from typing import Any

import aioice
import aioice.ice
import aiortc
import aiortc.rtcdtlstransport
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc import RTCRtpReceiver, RTCRtpSender

SUPPORTED_AIORTC = ("1.16.",)
SUPPORTED_AIOICE = ("0.13.",)

# Private attributes used by sfu.peer and sfu.forwarder.
_RECEIVER_ATTRS = (
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__decoder_queue",
    "_send_rtcp_pli",
    "_send_rtcp_nack",
    "_send_rtcp",
    "_handle_rtp_packet",
)
_SENDER_ATTRS = (
    "_ssrc",
    "_rtx_ssrc",
    "_stream_id",
    "_handle_rtcp_packet",
    "_RTCRtpSender__rtx_payload_type",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__rtcp_started",
    "_RTCRtpSender__rtcp_exited",
    "_run_rtcp",
)
# Private attributes used by sfu.fastpath, on the DTLS transport and its ICE connection.
_DTLS_ATTRS = ("_state", "_rx_srtp", "_tx_srtp", "_rtp_router", "_rtp_header_extensions_map",
               "transport")
_CONNECTION_ATTRS = ("_nominated", "data_received", "sendto")


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


def check_aiortc() -> None:
    """Fail start-up if the private hooks this SFU relies on are missing."""
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
    probe_missing = [a for a in ("_handle_rtp_packet", "_send_rtcp_pli", "_send_rtcp_nack")
                     if not hasattr(RTCRtpReceiver, a)]
    probe_missing += [a for a in ("_handle_rtcp_packet",) if not hasattr(RTCRtpSender, a)]
    probe_missing += [f"StunProtocol.{a}" for a in ("datagram_received",)
                      if not hasattr(aioice.ice.StunProtocol, a)]
    probe_missing += [f"Connection.{a}" for a in ("data_received", "sendto")
                      if not hasattr(aioice.Connection, a)]
    probe_missing += [f"RtpRouter.{a}" for a in ("route_rtp",)
                      if not hasattr(aiortc.rtcdtlstransport.RtpRouter, a)]
    if not hasattr(aiortc.rtcdtlstransport.State, "CONNECTED"):
        probe_missing.append("rtcdtlstransport.State.CONNECTED")
    if not hasattr(aiortc.RTCRtpTransceiver("audio", None, None), "_headerExtensions"):
        probe_missing.append("RTCRtpTransceiver._headerExtensions")
    if probe_missing:
        raise RuntimeError(f"aiortc lacks hooks the SFU needs: {probe_missing}")


def check_instance_attrs(obj: object) -> None:
    names = _RECEIVER_ATTRS if isinstance(obj, RTCRtpReceiver) else _SENDER_ATTRS
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise RuntimeError(f"aiortc {type(obj).__name__} lacks {missing}")


def check_transport_attrs(dtls: object) -> None:
    """The DTLS transport and ICE connection state the media fast path uses."""
    missing = [n for n in _DTLS_ATTRS if not hasattr(dtls, n)]
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    if connection is None:
        missing.append("transport._connection")
    else:
        missing += [f"_connection.{n}" for n in _CONNECTION_ATTRS if not hasattr(connection, n)]
    if missing:
        raise RuntimeError(f"aiortc {type(dtls).__name__} lacks {missing}")


def install_codec_guard() -> None:
    aiortc.rtcrtpreceiver.get_decoder = _refuse_codec  # type: ignore[assignment]
    aiortc.rtcrtpsender.get_encoder = _refuse_codec  # type: ignore[assignment]
    aiortc.rtcrtpreceiver.decoder_worker = _no_decoder_thread  # type: ignore[assignment]


def guard_receiver(receiver: RTCRtpReceiver) -> None:
    """Swap the receiver's decoder queue for one that refuses frames."""
    check_instance_attrs(receiver)
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
