"""A participant with valid SRTP keys sending hostile RTP and RTCP inside them.

Real aiortc participants join a real server; one of them then writes packets straight
into its own DTLS transport (protected with its SRTP keys, as a modified browser would),
and the test checks what the other party and an operator would see.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    pack_remb_fci,
    pack_rtcp_packet,
    unpack_remb_fci,
)

from tests.support.raw_media import (
    healthz_seconds,
    keeps_receiving,
    live_visit,
    offer,
    published_video,
    rtp,
    send_raw,
    spy_rtcp,
    transceiver,
)
from tests.support.server import (
    Participant,
    Server,
    metric,
    module_server,
)

pytestmark = pytest.mark.solo  # the other visit's media rate beside an attack

RTCP_RTPFB, RTCP_RTPFB_NACK = 205, 1


server = module_server("hostile")


def _received_video(p: Participant, slot: int) -> tuple[int, int]:
    """(sink SSRC, highest sequence number) of the video arriving in ``slot``."""
    t = transceiver(p, offer(p)["slots"][slot]["video"])
    streams = t.receiver._RTCRtpReceiver__remote_streams
    ssrc = max(streams, key=lambda s: streams[s].packets_received)
    return ssrc, streams[ssrc].max_seq


async def _limited(server: Server, limit: str) -> float:
    return await metric(server, "visitbridge_media_limited_total", f'limit="{limit}"')


async def test_sequence_jumps_do_not_stall_the_worker(server: Server) -> None:
    async with live_visit(server, "seq") as (inmate, family):
        before = await _limited(server, "seq_jump")
        ssrc, pt = published_video(family)
        reports = spy_rtcp(family, RtcpRrPacket)
        await family.wait_for(lambda: len(reports) >= 1, 5)
        highest = next(b for b in reports[-1].reports if b.ssrc == ssrc).highest_sequence
        # Each packet half the sequence space after the last (always ahead for SRTP),
        # the last one 2,000 numbers behind the real stream: resuming from there looks
        # like a loss of 2,000 packets unless the jumps were never taken at their word.
        last = (highest & 0xFFFF) - 2_000
        await send_raw(family, [rtp(pt, (last - k * 32_767) & 0xFFFF, ssrc)
                                 for k in range(299, -1, -1)])
        # aiortc's NACK generator spent about 9 ms per such packet: 2.7 s of stall.
        lag = await healthz_seconds(server)
        assert lag < 1.0, f"the worker answered /healthz after {lag:.2f} s"
        await keeps_receiving(family, 0)  # the other direction flows on
        # Receiver reports describe the real stream, not thousands of packets "lost".
        seen = len(reports)
        await family.wait_for(lambda: len(reports) >= seen + 2, 5)
        block = next(b for b in reports[-1].reports if b.ssrc == ssrc)
        assert block.packets_lost < 100, block
    await asyncio.sleep(0.3)  # the counters are flushed every 0.25 s
    after = await _limited(server, "seq_jump")
    assert after - before >= 250


async def test_a_flood_of_ssrcs_is_dropped_beyond_the_cap(server: Server) -> None:
    async with live_visit(server, "ssrc") as (inmate, family):
        before = await _limited(server, "ssrcs")
        ssrc, pt = published_video(family)
        reports = spy_rtcp(family, RtcpRrPacket)
        await send_raw(family, [rtp(pt, 1, ssrc + 1 + i) for i in range(500)])
        await keeps_receiving(inmate, 1)
        # The server's receiver reports (the publisher's congestion control reads them)
        # go on: one block per SSRC learnt used to overflow the report count and stop them.
        await family.wait_for(lambda: len(reports) >= 2, 5)
        after = await _limited(server, "ssrcs")
    # 8 SSRCs per connection: 3 are the family's own, 5 of the flood are learnt.
    assert after - before >= 490


def _nack_storm(sender_ssrc: int, media_ssrc: int, highest: int) -> bytes:
    """One NACK naming the last ~1,000 numbers, newest first, each FCI five times over
    (the newest are in the history, so the ones acted on are really resent)."""
    fcis = b"".join(struct.pack("!HH", (highest - 17 * k) & 0xFFFF, 0xFFFF)
                    for k in range(1, 61) for _ in range(5))
    return pack_rtcp_packet(RTCP_RTPFB, RTCP_RTPFB_NACK,
                            struct.pack("!LL", sender_ssrc, media_ssrc) + fcis)


async def test_a_nack_storm_is_held_to_the_retransmission_budget(server: Server) -> None:
    async with live_visit(server, "nack", frames=90) as (inmate, family):  # the history holds them
        before = await metric(server, "visitbridge_retransmissions_total")
        sink_ssrc, highest = _received_video(inmate, 1)
        await send_raw(inmate, [_nack_storm(1234, sink_ssrc, highest)] * 10)
        await asyncio.sleep(1.0)
        resent = await metric(server, "visitbridge_retransmissions_total") - before
        # Unlimited, each NACK resent every number it named, as often as named (~5,000);
        # none resent would mean NACKs go unanswered.
        assert 0 < resent <= 64 * 4, resent
        assert await _limited(server, "nack_truncated") > 0


async def test_a_remb_of_zero_cannot_starve_the_publisher(server: Server) -> None:
    async with live_visit(server, "remb") as (inmate, family):
        rembs = spy_rtcp(family, RtcpPsfbPacket)
        sink_ssrc, _ = _received_video(inmate, 1)
        remb = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1234, media_ssrc=0,
                                    fci=pack_remb_fci(0, [sink_ssrc])))
        # More often than the inmate's own aiortc sends its real estimate.
        for _ in range(60):
            await send_raw(inmate, [remb])
            await asyncio.sleep(0.05)
        await family.wait_for(lambda: len(rembs) >= 2, 5)
    # The server asks the publisher for the configured maximum once a second, whatever
    # a subscriber's estimate: it only thins that subscriber's own video.
    asked = [unpack_remb_fci(p.fci)[0] for p in rembs if p.fmt == RTCP_PSFB_APP]
    assert set(asked) == {800_000}, asked
    assert await _limited(server, "remb_floor") > 0
