"""Baseline for the forwarding benchmark: the naive aiortc relay (decode + re-encode).

    python -m benchmarks.mediarelay_server   (configured by the same VISITBRIDGE_* variables)

This is what an aiortc application does out of the box: every received track is
decoded, and ``aiortc.contrib.media.MediaRelay`` hands the frames to each subscriber's
sender, which encodes them again. It speaks the subset of the Visitbridge protocol the
load generator uses (``join`` with a token -> ``joined`` + ``offer`` with the same
``publish``/``slots`` layout -> ``answer``), so one client drives both servers and the
figures compare the media path alone.

Kept fair on purpose: tokens are verified by the product's own verifier, the event
loop is uvloop like the product's, the re-encoders target the clip's bitrate (aiortc's
default is 500 kb/s, which would halve the packet count and flatter nobody), relayed
frames are unbuffered (the freshest frame wins, as a real-time relay must), and an
empty slot parks its sender instead of letting aiortc poll it every 20 ms.
It exports ``visitbridge_forwarded_packets_total`` and ``..._bytes_total`` (RTP sent to
subscribers, counted at the DTLS transport) so the benchmark reads both servers alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiortc.codecs.vpx
from aiohttp import WSMsgType, web
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.rtp import is_rtcp

from app.config import Config, load
from auth.keys import PemDirKeyStore
from auth.tokens import VISIT_ROLES, TokenError, TokenVerifier
from sfu.aiortc_glue import allow_loopback_ice
from sfu.glue_rtp import hook_dtls_send, negotiated_codecs
from sfu.peer import KINDS  # the product's m-line order, which the load generator expects

log = logging.getLogger(__name__)

SLOTS = 2  # two-party visits
REENCODE_BITRATE_BPS = 1_000_000  # the benchmark clip's bitrate


class SlotTrack(MediaStreamTrack):
    """A slot's source: parks the sender until a publisher is attached, then relays it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._attached = asyncio.Event()

    @property
    def attached(self) -> bool:
        return self._source is not None

    def attach(self, source: MediaStreamTrack) -> None:
        self._source = source
        self._attached.set()

    async def recv(self) -> Any:
        await self._attached.wait()
        assert self._source is not None
        return await self._source.recv()


@dataclass
class Counters:
    packets: int = 0
    octets: int = 0


@dataclass
class Member:
    sub: str
    slot: int
    pc: RTCPeerConnection
    ws: web.WebSocketResponse
    publish: dict[str, RTCRtpTransceiver]
    slots: list[dict[str, SlotTrack]]
    answered: bool = False
    sources: dict[str, MediaStreamTrack] = field(default_factory=dict)


class RelayServer:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._verifier = TokenVerifier(PemDirKeyStore(config.keys_dir), config.token_issuer,
                                       config.token_audience, config.token_leeway_s)
        self._relay = MediaRelay()
        self._visits: dict[str, dict[int, Member]] = {}
        self.sent = {kind: Counters() for kind in KINDS}

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=256 * 1024)
        await ws.prepare(request)
        first = await ws.receive()
        try:
            message = json.loads(first.data) if first.type == WSMsgType.TEXT else {}
            claims = await self._verifier.verify(str(message.get("token")), now=time.time(),
                                                 roles=VISIT_ROLES)
        except (ValueError, TokenError) as exc:
            await ws.send_json({"type": "error", "code": getattr(exc, "code", "bad_message"),
                                "message": str(exc)})
            await ws.close(code=4001)
            return ws
        assert claims.visit is not None
        members = self._visits.setdefault(claims.visit.id, {})
        free = [s for s in range(SLOTS) if s not in members]
        if not free:
            await ws.send_json({"type": "error", "code": "visit_full", "message": "full"})
            await ws.close(code=4003)
            return ws
        member = self._admit(claims.sub, free[0], ws)
        members[member.slot] = member  # before any await: concurrent joins take other slots
        try:
            await self._offer(member)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("type") == "answer" and not member.answered:
                        await self._answer(member, members, data["sdp"])
                    elif data.get("type") == "leave":
                        break
        finally:
            members.pop(member.slot, None)
            if not members:
                self._visits.pop(claims.visit.id, None)
            await member.pc.close()
        return ws

    def _admit(self, sub: str, slot: int, ws: web.WebSocketResponse) -> Member:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[],
                                                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc.on("connectionstatechange",
              lambda: log.info("%s connection %s", sub, pc.connectionState))
        publish = {kind: pc.addTransceiver(kind, direction="recvonly") for kind in KINDS}
        slots = []
        for _ in range(SLOTS):
            tracks = {kind: SlotTrack(kind) for kind in KINDS}
            for kind in KINDS:
                pc.addTransceiver(tracks[kind], direction="sendonly")
            slots.append(tracks)
        opus = [c for c in RTCRtpReceiver.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"]
        for t in pc.getTransceivers():
            if t.kind == "audio":
                t.setCodecPreferences(opus)
        return Member(sub, slot, pc, ws, publish, slots)

    async def _offer(self, member: Member) -> None:
        pc = member.pc
        await pc.setLocalDescription(await pc.createOffer())
        senders = [t for t in pc.getTransceivers() if t not in member.publish.values()]
        await member.ws.send_json({"type": "joined",
                                   "you": {"id": member.sub, "slot": member.slot}})
        await member.ws.send_json({
            "type": "offer", "sdp": pc.localDescription.sdp,
            "publish": {k: t.mid for k, t in member.publish.items()},
            "slots": [{kind: senders[2 * i + j].mid for j, kind in enumerate(KINDS)}
                      for i in range(SLOTS)],
        })

    async def _answer(self, member: Member, members: dict[int, Member], sdp: str) -> None:
        await member.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        member.answered = True
        for kind, t in member.publish.items():
            member.sources[kind] = t.receiver.track
        self._count_sent(member.pc)
        for a in members.values():
            for b in members.values():
                if a is not b and a.answered and b.answered:
                    for kind in KINDS:
                        track = b.slots[a.slot][kind]
                        if not track.attached:
                            log.info("%s slot %d %s <- %s", b.sub, a.slot, kind, a.sub)
                            track.attach(self._relay.subscribe(a.sources[kind], buffered=False))

    def _count_sent(self, pc: RTCPeerConnection) -> None:
        """Count RTP (not RTCP) leaving this connection: what its subscriber receives."""
        transports = {t.sender.transport for t in pc.getTransceivers()}
        audio_pt = self._audio_pt(pc)
        for transport in transports:

            def counted(original: Any) -> Any:
                async def counting(data: bytes) -> None:
                    await original(data)
                    if not is_rtcp(data):
                        kind = "audio" if data[1] & 0x7F == audio_pt else "video"
                        counters = self.sent[kind]
                        counters.packets += 1
                        counters.octets += len(data) - _rtp_header_length(data)
                return counting

            hook_dtls_send(transport, counted)

    @staticmethod
    def _audio_pt(pc: RTCPeerConnection) -> int | None:
        for t in pc.getTransceivers():
            codecs = negotiated_codecs(t)
            if t.kind == "audio" and codecs:
                return int(codecs[0].payloadType)
        return None

    async def metrics(self, request: web.Request) -> web.Response:
        lines = []
        for name, attr in (("packets", "packets"), ("bytes", "octets")):
            lines.append(f"# TYPE visitbridge_forwarded_{name} counter")
            for kind, counters in self.sent.items():
                lines.append(f'visitbridge_forwarded_{name}_total{{kind="{kind}"}} '
                             f"{getattr(counters, attr)}")
        return web.Response(text="\n".join(lines) + "\n")


def _rtp_header_length(data: bytes) -> int:
    length = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= length + 4:
        length += 4 + 4 * int.from_bytes(data[length + 2:length + 4], "big")
    return length


def main() -> None:
    config = load()
    logging.basicConfig(level=config.log_level.upper())
    if config.ice_loopback:
        allow_loopback_ice()
    aiortc.codecs.vpx.DEFAULT_BITRATE = REENCODE_BITRATE_BPS  # type: ignore[attr-defined]
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    server = RelayServer(config)
    app = web.Application()
    app.router.add_get("/ws", server.websocket)
    app.router.add_get("/metrics", server.metrics)
    web.run_app(app, host=config.host, port=config.port, access_log=None,
                print=lambda _: print(f"baseline relay on port {config.port}", flush=True))


if __name__ == "__main__":
    main()
