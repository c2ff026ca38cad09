"""Writing raw packets from inside a real aiortc participant's SRTP session.

What a modified browser can do: any RTP or RTCP it likes, protected with its own keys,
so the server's SRTP layer accepts it and its parsers and forwarding must cope.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiortc import RTCRtpTransceiver
from aiortc.rtp import RtpPacket

from tests.support.server import Participant, Server, in_visit, inmate_and_family, visit_now


def offer(p: Participant) -> dict[str, Any]:
    return next(e for e in p.events if e["type"] == "offer")


def transceiver(p: Participant, mid: str) -> RTCRtpTransceiver:
    assert p.pc is not None
    return next(t for t in p.pc.getTransceivers() if t.mid == mid)


async def send_raw(p: Participant, packets: list[bytes]) -> int:
    """Protect each packet with the participant's own SRTP keys and send it; returns how
    many SRTP could protect (it refuses what it cannot parse as RTP or RTCP)."""
    assert p.pc is not None
    dtls = p.pc.getTransceivers()[0].sender.transport
    sent = 0
    for data in packets:
        try:
            await dtls._send_rtp(data)
        except Exception:  # pylibsrtp's parse errors: nothing went on the wire
            continue
        sent += 1
    return sent


def rtp(payload_type: int, seq: int, ssrc: int) -> bytes:
    return RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=seq, ssrc=ssrc,
                     payload=b"\x10\x00junk").serialize()


def published_video(p: Participant) -> tuple[int, int]:
    """(SSRC, VP8 payload type) of what the participant publishes."""
    t = transceiver(p, offer(p)["publish"]["video"])
    return t.sender._ssrc, t._codecs[0].payloadType


def published_audio(p: Participant) -> tuple[int, int]:
    """(SSRC, Opus payload type) of what the participant publishes."""
    t = transceiver(p, offer(p)["publish"]["audio"])
    return t.sender._ssrc, t._codecs[0].payloadType


def spy_rtcp(p: Participant, kind: type) -> list[Any]:
    """The RTCP packets of type ``kind`` the server sends about the published video."""
    sender = transceiver(p, offer(p)["publish"]["video"]).sender
    seen: list[Any] = []
    original = sender._handle_rtcp_packet

    async def spy(packet: Any) -> None:
        if isinstance(packet, kind):
            seen.append(packet)
        await original(packet)

    sender._handle_rtcp_packet = spy
    return seen


async def healthz_seconds(server: Server) -> float:
    """How long the worker takes to answer /healthz: its event loop's responsiveness."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
        await resp.read()
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def live_visit(server: Server, tag: str,
                     frames: int = 30) -> AsyncIterator[tuple[Participant, Participant]]:
    """A live two-party visit, each party having decoded ``frames`` of the other."""
    inmate, family = inmate_and_family(server, visit_now(f"hostile-{tag}"), tag)
    async with in_visit(inmate, family):
        await family.wait_for(lambda: family.video_from(0).frames >= frames, 20)
        await inmate.wait_for(lambda: inmate.video_from(1).frames >= frames, 20)
        yield inmate, family


async def keeps_receiving(p: Participant, slot: int) -> None:
    """Ten more frames decoded from ``slot`` within 10 s."""
    frames = p.video_from(slot).frames
    await p.wait_for(lambda: p.video_from(slot).frames > frames + 10, 10)


def received_ssrcs(p: Participant) -> list[int]:
    """The SSRCs the server sends the participant media on (its sinks)."""
    assert p.pc is not None
    return [ssrc for t in p.pc.getTransceivers()
            for ssrc in t.receiver._RTCRtpReceiver__remote_streams]
