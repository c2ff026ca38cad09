"""Test helpers: a real server process, real tokens, real aiortc participants."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from auth.issuer import issue_token
from auth.keys import load_private_key, write_keypair
from auth.tokens import VisitClaim
from tests.support.postgres import database_env
from tests.support.process import ROOT, free_port, read_log, stop_process, wait_listening

ISSUER = "test-records"
AUDIENCE = "visitbridge-test"
KID = "records-1"
RED = (220, 30, 30)
BLUE = (30, 30, 220)


@dataclass
class Server:
    """A ``visitbridge serve`` process on loopback, with its own data dir and keys.

    ``env`` holds settings beyond the defaults made here (its own port and data dir,
    this module's token issuer, loopback ICE); the process also inherits the caller's
    environment."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ("app.cli", "serve")  # run as ``python -m``
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    host: str = "127.0.0.1"  # where it listens (a test network's host end, for one)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        private = self.data_dir / "keys" / f"{KID}.private.pem"
        if not private.exists():
            write_keypair(KID, self.data_dir / "keys" / "public", private)
        self.env = {
            "VISITBRIDGE_DATA_DIR": str(self.data_dir),
            "VISITBRIDGE_PORT": str(self.port),
            "VISITBRIDGE_HOST": self.host,
            "VISITBRIDGE_TOKEN_ISSUER": ISSUER,
            "VISITBRIDGE_TOKEN_AUDIENCE": AUDIENCE,
            "VISITBRIDGE_ICE_LOOPBACK": "1",
            **database_env(self.data_dir),
            **self.env,
        }

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def private_key(self) -> Any:
        return load_private_key(self.data_dir / "keys" / f"{KID}.private.pem")

    def token(self, sub: str, role: str, visit: VisitClaim | None, name: str | None = None,
              now: float | None = None, **kwargs: Any) -> str:
        return issue_token(self.private_key(), kid=KID, issuer=ISSUER, audience=AUDIENCE,
                           sub=sub, role=role, name=name or sub.title(), visit=visit,
                           now=time.time() if now is None else now, **kwargs)

    def log_text(self) -> str:
        return read_log(self.log_path)


def make_server(data_dir: Path, **env: str) -> Server:
    return Server(data_dir, env=env)


def start(server: Server, timeout: float = 20.0) -> Server:
    server.log_path = server.data_dir / f"server-{server.port}.log"
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(
            [sys.executable, "-m", *server.command],
            cwd=ROOT, env={**os.environ, **server.env}, stdout=log, stderr=subprocess.STDOUT)
    wait_listening(server.process, server.port, timeout, "server", server.log_text,
                   server.host)
    return server


def stop(server: Server) -> None:
    stop_process(server.process)


@contextlib.contextmanager
def running_server(data_dir: Path, **env: str) -> Iterator[Server]:
    server = start(make_server(data_dir, **env))
    try:
        yield server
    finally:
        stop(server)


def module_server(name: str, **env: str) -> Any:
    """A module-scoped ``server`` fixture: one real server for every test of a module,
    its data under a temporary folder named ``name``."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
        with running_server(Path(tmp_path_factory.mktemp(name)), **env) as s:
            yield s

    return server


def visit_now(visit_id: str, minutes: int = 30, privileged: bool = False) -> VisitClaim:
    now = int(time.time())
    return VisitClaim(id=visit_id, starts_at=now - 5, ends_at=now + minutes * 60,
                      privileged=privileged)


async def metric(server: Server, name: str, labels: str = "") -> float:
    """Sum of a metric's samples whose label text contains ``labels``."""
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in "{ ") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class PacedTrack(MediaStreamTrack):
    """A synthetic track paced in real time, as a camera or microphone delivers."""

    def __init__(self) -> None:
        super().__init__()
        self._pts = 0
        self._start: float | None = None

    async def _next_pts(self, step: int, clock_rate: int) -> int:
        """Advance by one frame of ``step`` ticks; wait until that frame is due."""
        if self._start is None:
            self._start = time.time()
        self._pts += step
        wait = self._start + self._pts / clock_rate - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        return self._pts


class ColourTrack(PacedTrack):
    """Video of one flat colour, so a receiver can tell whose picture it decodes."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], width: int = 320, height: int = 240,
                 noise: bool = False) -> None:
        super().__init__()
        self._frame_rgb = np.full((height, width, 3), rgb, dtype=np.uint8)
        self._noise = noise  # random pixels: a high bitrate, to fill disks quickly

    async def recv(self) -> av.VideoFrame:
        pts = await self._next_pts(3000, 90000)
        pixels = self._frame_rgb
        if self._noise:
            pixels = np.random.randint(0, 256, pixels.shape, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


class ToneTrack(PacedTrack):
    """A 440 Hz tone, 20 ms per frame."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        t = np.arange(960) / 48000
        self._samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)

    async def recv(self) -> av.AudioFrame:
        pts = await self._next_pts(960, 48000)
        frame = av.AudioFrame.from_ndarray(self._samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


@dataclass
class Received:
    frames: int = 0
    first_at: float | None = None
    colour: tuple[float, float, float] | None = None
    size: tuple[int, int] | None = None


class Participant:
    """A real aiortc participant talking to the server over the real WebSocket."""

    def __init__(self, server: Server, token: str, colour: tuple[int, int, int] | None = None,
                 publish: bool = True, noise: bool = False,
                 video_codec: str | None = None) -> None:
        self.server = server
        self.noise = noise
        self.video_codec = video_codec  # e.g. "H264": answer with only that video codec
        self.token = token
        self.colour = colour or (200, 30, 30)
        self.publish = publish
        self.events: list[dict[str, Any]] = []
        self.video: dict[int, Received] = {}  # slot -> what was decoded
        self.audio: dict[int, Received] = {}
        self.pc: RTCPeerConnection | None = None
        self.error: dict[str, Any] | None = None
        self.close_code: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.joined_at: float | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def disconnected(self) -> bool:
        """Joined once, and its WebSocket has closed since (a page would reconnect)."""
        return self._reader is not None and self._reader.done()

    async def join(self) -> dict[str, Any]:
        """Join; return the ``joined`` message (or the ``error``)."""
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.server.ws_url)
        self.joined_at = time.time()
        await self._ws.send_json({"type": "join", "token": self.token})
        first = await self._next()
        if first["type"] == "error":
            self.error = first
            await self._ws.receive()
            self.close_code = self._ws.close_code
            return first
        offer = await self._next()
        assert offer["type"] == "offer", offer
        await self._answer(offer)
        self._reader = asyncio.ensure_future(self._read_events())
        self._tasks.append(self._reader)
        return first

    async def _next(self) -> dict[str, Any]:
        assert self._ws is not None
        msg = await asyncio.wait_for(self._ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"websocket closed: {msg.type} {self._ws.close_code}")
        data = json.loads(msg.data)
        self.events.append(data)
        return data

    async def _read_events(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.events.append(data)
                if data["type"] == "error":
                    self.error = data
        self.close_code = self._ws.close_code

    async def _answer(self, offer: dict[str, Any]) -> None:
        # max-bundle: aiortc's balanced policy strands all but the first m-line per kind.
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        slots = offer["slots"]

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
            slot = next(i for i, s in enumerate(slots) if mid in (s["audio"], s["video"]))
            self._tasks.append(asyncio.ensure_future(self._consume(track, slot)))

        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        if self.video_codec:
            # Like a browser that supports only this codec: drop the others (and their
            # RTX) from every video m-line of the answer.
            for t in self.pc.getTransceivers():
                if t.kind == "video":
                    keep = {c.payloadType for c in t._codecs
                            if c.mimeType.lower() == f"video/{self.video_codec.lower()}"}
                    t._codecs = [c for c in t._codecs if c.payloadType in keep
                                 or c.parameters.get("apt") in keep]
        if self.publish:
            for t in self.pc.getTransceivers():
                if t.mid == offer["publish"]["video"]:
                    t.direction = "sendonly"
                    t.sender.replaceTrack(ColourTrack(self.colour, noise=self.noise))
                elif t.mid == offer["publish"]["audio"]:
                    t.direction = "sendonly"
                    t.sender.replaceTrack(ToneTrack())
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._ws.send_json({"type": "answer", "sdp": self.pc.localDescription.sdp})

    async def _consume(self, track: MediaStreamTrack, slot: int) -> None:
        table = self.video if track.kind == "video" else self.audio
        got = table.setdefault(slot, Received())
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            got.frames += 1
            if got.first_at is None:
                got.first_at = time.time()
            if track.kind == "video":
                rgb = frame.to_ndarray(format="rgb24")
                got.size = (frame.width, frame.height)
                got.colour = tuple(float(c) for c in rgb.reshape(-1, 3).mean(axis=0))

    def video_from(self, slot: int) -> Received:
        return self.video.get(slot, Received())

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while not predicate():
            if time.time() > deadline:
                raise TimeoutError(f"condition not met; events: {self.events[-5:]}")
            await asyncio.sleep(0.05)

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_json(message)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()


def inmate_and_family(server: Server, visit: VisitClaim, tag: str,
                      **kwargs: Any) -> tuple[Participant, Participant]:
    """The two parties of most visits, ``inmate-<tag>`` and ``family-<tag>``: the inmate
    shows red and the family member blue, so each can tell whose picture it decodes."""
    return (Participant(server, server.token(f"inmate-{tag}", "inmate", visit), RED, **kwargs),
            Participant(server, server.token(f"family-{tag}", "family", visit), BLUE, **kwargs))


@contextlib.asynccontextmanager
async def participants(*people: Participant) -> AsyncIterator[tuple[Participant, ...]]:
    try:
        yield people
    finally:
        for p in people:
            await p.close()


@contextlib.asynccontextmanager
async def in_visit(*people: Participant) -> AsyncIterator[tuple[Participant, ...]]:
    """Join each in turn (the first takes slot 0); close them all afterwards."""
    async with participants(*people):
        for p in people:
            answer = await p.join()
            assert answer["type"] == "joined", answer
        yield people


@contextlib.asynccontextmanager
async def family_visit(server: Server, visit: VisitClaim, tag: str, **kwargs: Any
                       ) -> AsyncIterator[tuple[Participant, Participant]]:
    """``inmate_and_family``, both joined: the visit most tests need."""
    async with in_visit(*inmate_and_family(server, visit, tag, **kwargs)) as (inmate, family):
        yield inmate, family
