"""A publisher's low-resolution simulcast encoding (``q``), sent beside aiortc's own.

aiortc sends one encoding per m-line and writes no RTP stream id, which the server takes
as the full encoding. ``LowCopy`` sends a second clip on the same m-line as a browser
sends its ``q`` encoding: its own SSRC, the negotiated VP8 payload type and the
rtp-stream-id header extension naming it, protected with the connection's SRTP keys.
Keyframe requests for it are not answered (aiortc routes RTCP only to its own senders):
the clip's own keyframes serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from types import SimpleNamespace

from aiortc import RTCRtpTransceiver

from sfu.glue_rtp import negotiated_codecs, negotiated_header_extensions, send_protected
from sfu.simulcast import LOW, RTP_STREAM_ID_URI
from tests.support.vp8_layers import layered_pack

from .media import EncodedClip, LoopingPacketTrack


class LowCopy:
    """Sends ``clip`` as encoding ``q`` of the transceiver's video until ``close``."""

    def __init__(self, transceiver: RTCRtpTransceiver, clip: EncodedClip) -> None:
        ids = [e.id for e in negotiated_header_extensions(transceiver)
               if e.uri == RTP_STREAM_ID_URI]
        if not ids:
            raise RuntimeError("the answer negotiated no rtp-stream-id extension")
        # One-byte header extension (RFC 8285): the id, length 1, "q", padding.
        self._extension = struct.pack("!HHBcxx", 0xBEDE, 1, ids[0] << 4, LOW.encode())
        self._payload_type = negotiated_codecs(transceiver)[0].payloadType
        self._dtls = transceiver.sender.transport
        self._track = LoopingPacketTrack(clip)
        self._packer = SimpleNamespace(picture_id=random.randrange(1 << 15))
        self._ssrc = random.getrandbits(32)
        self._seq = random.randrange(1 << 16)
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            frame = await self._track.recv()
            payloads, timestamp = layered_pack(self._packer, frame)  # type: ignore[arg-type]
            for n, payload in enumerate(payloads):
                header = struct.pack("!BBHII", 0x90, self._payload_type
                                     | (0x80 if n == len(payloads) - 1 else 0),
                                     self._seq, timestamp & 0xFFFFFFFF, self._ssrc)
                self._seq = (self._seq + 1) & 0xFFFF
                with contextlib.suppress(ConnectionError):  # DTLS not yet connected
                    await send_protected(self._dtls, header + self._extension + payload)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
