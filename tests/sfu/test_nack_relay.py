"""A packet the server never got is NACKed to its publisher again when a subscriber asks.

Real aiortc participants on a real server. The inmate loses one video packet on its way
out and never resends anything (its retransmission is switched off, as when every
resent copy is lost too). The server NACKs the packet once, when the gap shows; the
family's receiver then NACKs the gap in what it is forwarded, and the server, which does
not have the packet, asks the inmate for it again rather than leave the family's
picture waiting for a keyframe.
"""

from __future__ import annotations

import asyncio

from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

from tests.support.server import Server, family_visit, module_server, visit_now

server = module_server("nack-relay")


async def test_a_subscribers_nack_for_a_packet_the_server_lacks_reaches_the_publisher(
        server: Server) -> None:
    async with family_visit(server, visit_now("relay-1"), "relay") as (inmate, family):
        await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
        assert inmate.pc is not None
        sender = next(s for s in inmate.pc.getSenders() if s.kind == "video")
        nacked: list[int] = []
        handle_rtcp = sender._handle_rtcp_packet

        async def never_resend(packet: object) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                nacked.extend(packet.lost)
            else:
                await handle_rtcp(packet)

        sender._handle_rtcp_packet = never_resend  # type: ignore[method-assign]
        dtls = sender.transport
        send = dtls._send_rtp
        dropped: list[int] = []

        async def lose_one(data: bytes) -> None:
            rtcp = 192 <= data[1] <= 223  # RFC 5761's demultiplexing
            video = not rtcp and int.from_bytes(data[8:12], "big") == sender._ssrc
            if video and not dropped:
                dropped.append(int.from_bytes(data[2:4], "big"))
                return
            await send(data)

        dtls._send_rtp = lose_one  # type: ignore[method-assign]
        for _ in range(50):
            await asyncio.sleep(0.1)
            if dropped and nacked.count(dropped[0]) >= 2:
                break
        assert dropped and nacked.count(dropped[0]) >= 2, (dropped, nacked)
