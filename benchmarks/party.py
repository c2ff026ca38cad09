"""One simulated participant: real WebSocket signaling, real aiortc media, no codecs.

It speaks the subset of docs/protocol.md a browser needs to take part in a visit: send
``join`` with the token, read ``joined`` and the server's ``offer`` (``publish`` names the
m-lines to send on, ``slots`` the ones the others arrive on), answer. It publishes the
pre-encoded clips (benchmarks/media.py; a second video clip as a simulcast low copy,
benchmarks/low_copy.py) and counts what arrives (benchmarks/receive.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from sfu.glue_rtp import negotiated_codecs

from .low_copy import LowCopy
from .media import EncodedClip, LoopingPacketTrack, SendStats, hook_keyframe_requests
from .receive import ReceiveTap, TapTotals

SIGNALING_TIMEOUT_S = 15.0


class JoinError(RuntimeError):
    """The server refused the join or signaling broke before media could flow."""


class Party:
    """A participant of a visit, publishing audio and video and subscribing to the rest."""

    def __init__(self, name: str, ws_url: str, token: str, video: EncodedClip,
                 audio: EncodedClip, low: EncodedClip | None = None) -> None:
        """``low``: a second video clip sent as the simulcast encoding ``q``."""
        self.name = name
        self._ws_url = ws_url
        self._token = token
        self._clips = {"video": video, "audio": audio}
        self._low_clip = low
        self._low: LowCopy | None = None
        self.tracks: dict[str, LoopingPacketTrack] = {}
        self.taps: list[ReceiveTap] = []
        self._publishing: list[RTCRtpTransceiver] = []
        self.pc: RTCPeerConnection | None = None
        self.join_sent_at: float | None = None
        self.events: list[dict[str, Any]] = []
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def join(self) -> None:
        """Join through the WebSocket and answer the offer; media starts on its own."""
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self._ws_url, heartbeat=None)
        self.join_sent_at = time.monotonic()
        await self._ws.send_json({"type": "join", "token": self._token})
        joined = await self._next()
        if joined["type"] != "joined":
            raise JoinError(f"{self.name}: {joined}")
        offer = await self._next()
        while offer["type"] != "offer":  # visit events may come first (visit_started, ...)
            if offer["type"] == "error":
                raise JoinError(f"{self.name}: {offer}")
            offer = await self._next()
        await self._answer(offer)
        self._reader = asyncio.ensure_future(self._read_events())

    async def _next(self) -> dict[str, Any]:
        assert self._ws is not None
        msg = await asyncio.wait_for(self._ws.receive(), SIGNALING_TIMEOUT_S)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise JoinError(f"{self.name}: websocket {msg.type.name} ({self._ws.close_code})")
        data: dict[str, Any] = json.loads(msg.data)
        self.events.append(data)
        return data

    async def _answer(self, offer: dict[str, Any]) -> None:
        # max-bundle: with aiortc's default (balanced) policy the m-lines after the first
        # of each kind keep their own transport, which never connects.
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        publish_mids = {offer["publish"].get(kind): kind for kind in ("audio", "video")}
        for transceiver in self.pc.getTransceivers():
            kind = publish_mids.get(transceiver.mid)
            if kind is not None:
                self._publishing.append(transceiver)
                track = LoopingPacketTrack(self._clips[kind])
                transceiver.direction = "sendonly"
                transceiver.sender.replaceTrack(track)
                hook_keyframe_requests(transceiver.sender, track)
                self.tracks[kind] = track
            else:
                self.taps.append(ReceiveTap(transceiver.receiver, transceiver.kind))
        if set(self.tracks) != {"audio", "video"}:
            raise JoinError(f"{self.name}: the offer has no publish m-lines: {offer['publish']}")
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._check_codecs()
        if self._low_clip is not None:
            video = next(t for t in self._publishing if t.kind == "video")
            self._low = LowCopy(video, self._low_clip)
        assert self._ws is not None
        await self._ws.send_json({"type": "answer", "sdp": self.pc.localDescription.sdp})

    def _check_codecs(self) -> None:
        """The clips are VP8 and Opus: fail loudly if anything else was negotiated."""
        for transceiver in self._publishing:
            codecs = [c.mimeType.lower() for c in negotiated_codecs(transceiver)]
            expected = "video/vp8" if transceiver.kind == "video" else "audio/opus"
            if not codecs or codecs[0] != expected:
                raise JoinError(f"{self.name}: negotiated {codecs}, the clip is {expected}")

    async def _read_events(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))

    @property
    def first_video_at(self) -> float | None:
        times = [t.first_video_at for t in self.taps if t.first_video_at is not None]
        return min(times) if times else None

    @property
    def first_keyframe_at(self) -> float | None:
        times = [t.first_keyframe_at for t in self.taps if t.first_keyframe_at is not None]
        return min(times) if times else None

    @property
    def join_seconds(self) -> float | None:
        """From the join message sent to the first forwarded video packet."""
        return self._since_join(self.first_video_at)

    @property
    def picture_seconds(self) -> float | None:
        """From the join message sent to the first forwarded keyframe: a picture."""
        return self._since_join(self.first_keyframe_at)

    def _since_join(self, moment: float | None) -> float | None:
        if moment is None or self.join_sent_at is None:
            return None
        return moment - self.join_sent_at

    def received(self) -> dict[str, TapTotals]:
        totals = {"audio": TapTotals(), "video": TapTotals()}
        for tap in self.taps:
            totals[tap.kind] = totals[tap.kind] + tap.totals()
        return totals

    def sent(self) -> dict[str, SendStats]:
        return {kind: track.stats for kind, track in self.tracks.items()}

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") in ("error", "ended")]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._low is not None:
            await self._low.close()
        if self.pc is not None:
            await self.pc.close()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send_json({"type": "leave"})
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
