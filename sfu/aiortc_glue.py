"""Where the SFU reaches into aiortc's private state, in one place.

aiortc always decodes what it receives and encodes what it sends; a forwarding SFU must
do neither. The media path therefore replaces, per instance, the receiver's RTP handler
and the sender's RTCP handler, and sends through the DTLS transport directly. These are
private, name-mangled attributes: ``check_aiortc`` verifies at start-up that every one
exists in the installed version, so an upgrade fails loudly instead of silently decoding.

``install_codec_guard`` makes any decoder or encoder creation, and any frame handed to a
receiver's decode queue, count and fail: the counters are exported so a test (and ops)
can prove the server never decoded or encoded media.
"""

from __future__ import annotations

import queue
from typing import Any

import aioice.ice
import aiortc
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc import RTCRtpReceiver, RTCRtpSender

SUPPORTED_AIORTC = ("1.16.",)

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
)


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
    probe_missing = [a for a in ("_handle_rtp_packet", "_send_rtcp_pli", "_send_rtcp_nack")
                     if not hasattr(RTCRtpReceiver, a)]
    probe_missing += [a for a in ("_handle_rtcp_packet",) if not hasattr(RTCRtpSender, a)]
    if probe_missing:
        raise RuntimeError(f"aiortc lacks hooks the SFU needs: {probe_missing}")


def check_instance_attrs(obj: object) -> None:
    names = _RECEIVER_ATTRS if isinstance(obj, RTCRtpReceiver) else _SENDER_ATTRS
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise RuntimeError(f"aiortc {type(obj).__name__} lacks {missing}")


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
