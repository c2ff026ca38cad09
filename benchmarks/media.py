"""Pre-encoded media for load generation: encode once, send many times.

The load generator shares the machine's cores with the server it measures, so no party
may encode at run time: a single libvpx encoder at 640x480 costs more CPU than the
forwarding it is meant to load. We encode a short clip once at start-up (VP8 and Opus,
through PyAV) and keep the ``av.Packet`` objects in memory. aiortc's ``RTCRtpSender``
accepts an ``av.Packet`` from ``track.recv()`` and only packetizes it with the codec's
``pack()`` (rtcrtpsender.py ``_next_encoded_frame``), so every party sends real VP8 and
Opus at real-time pace for the cost of RTP packetization and SRTP.

Keyframes on request: a subscriber's PLI reaches the publisher's sender, which calls its
own ``_send_keyframe()`` (rtcrtpsender.py ~351) to ask an encoder that does not exist.
``hook_keyframe_requests`` replaces that method on the sender *instance* with the
track's ``request_keyframe``; the track then jumps to the clip's next keyframe. That is
what a browser's encoder does, and it keeps the server's PLI relay (and with it the
time to first picture) honest.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender

from sfu.glue_rtp import hook_sender_keyframe

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000


@dataclass(frozen=True)
class EncodedClip:
    """A looping clip of encoded frames, all of the same duration."""

    kind: str
    packets: list[av.Packet]
    keyframes: list[int]  # indexes into packets
    ticks_per_frame: int  # in ``clock`` units
    clock: int

    @property
    def frame_seconds(self) -> float:
        return self.ticks_per_frame / self.clock

    @property
    def bitrate_bps(self) -> float:
        total = sum(p.size for p in self.packets)
        return total * 8 / (len(self.packets) * self.frame_seconds)

    def next_keyframe(self, index: int) -> int:
        """The first keyframe at or after ``index`` (wrapping to the clip's start)."""
        for k in self.keyframes:
            if k >= index:
                return k
        return self.keyframes[0]


def _test_pattern(width: int, height: int, frames: int) -> list[np.ndarray]:
    """Moving pictures with texture, so VP8 spends the target bitrate on every frame.

    A flat or static picture would encode to a few hundred bytes per frame and make the
    load unrealistically light; scrolling noise plus a moving box keeps the encoder busy
    like a webcam does.
    """
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, (height, width * 2), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, axis=1)) // 2).astype(np.uint8)
    ys = np.linspace(0, 255, height, dtype=np.uint16)[:, None]
    out = []
    for n in range(frames):
        shift = (n * 4) % width
        luma = texture[:, shift:shift + width]
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[..., 0] = luma
        img[..., 1] = ((ys + n * 2) % 256).astype(np.uint8)
        img[..., 2] = 255 - luma
        x = int((np.sin(n / 15) + 1) / 2 * (width - 120))
        y = int((np.cos(n / 20) + 1) / 2 * (height - 120))
        img[y:y + 120, x:x + 120] = (240, 240, 40)
        out.append(img)
    return out


def encode_vp8(seconds: float = 10.0, width: int = 640, height: int = 480, fps: int = 30,
               bitrate_bps: int = 1_000_000, keyframe_every_s: float = 10 / 3) -> EncodedClip:
    """Encode a moving test pattern to VP8 with libvpx, real-time settings like aiortc's.

    The clip length is a whole number of GOPs, so the loop restarts on a keyframe.
    """
    gop = round(keyframe_every_s * fps)
    frames = max(1, round(seconds * fps / gop)) * gop
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate_bps
    codec.gop_size = gop
    codec.qmin, codec.qmax = 2, 56
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                     "minrate": str(bitrate_bps), "maxrate": str(bitrate_bps),
                     "bufsize": str(bitrate_bps), "keyint_min": str(gop)}
    packets: list[av.Packet] = []
    for n, img in enumerate(_test_pattern(width, height, frames)):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        # Force the GOP structure exactly: the loop seam must fall on a keyframe.
        frame.pict_type = (av.video.frame.PictureType.I if n % gop == 0
                           else av.video.frame.PictureType.NONE)
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    if len(packets) != frames:
        raise RuntimeError(f"libvpx gave {len(packets)} packets for {frames} frames")
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    if not keyframes or keyframes[0] != 0:
        raise RuntimeError("the VP8 clip must start with a keyframe")
    return EncodedClip("video", packets, keyframes, VIDEO_CLOCK // fps, VIDEO_CLOCK)


def encode_opus(seconds: float = 10.0, bitrate_bps: int = 32_000) -> EncodedClip:
    """Encode a warbling tone to Opus, 20 ms per packet (what browsers send)."""
    frame_samples = AUDIO_CLOCK // 50
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_CLOCK
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = bitrate_bps
    codec.time_base = fractions.Fraction(1, AUDIO_CLOCK)
    codec.options = {"application": "voip", "frame_duration": "20"}
    count = round(seconds * 50)
    t = np.arange(count * frame_samples) / AUDIO_CLOCK
    pitch = 440 + 80 * np.sin(2 * np.pi * 0.5 * t)  # a tone that moves, like speech does
    samples = (np.sin(2 * np.pi * np.cumsum(pitch) / AUDIO_CLOCK) * 8000).astype(np.int16)
    packets: list[av.Packet] = []
    for n in range(count):
        chunk = samples[n * frame_samples:(n + 1) * frame_samples].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = n * frame_samples
        frame.time_base = fractions.Fraction(1, AUDIO_CLOCK)
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    return EncodedClip("audio", packets, [0], frame_samples, AUDIO_CLOCK)


@dataclass
class SendStats:
    """What a publishing track did."""

    frames: int = 0
    late: int = 0  # frames sent more than LoopingPacketTrack.LATE_S behind schedule
    resyncs: int = 0  # times it fell RESYNC_S behind and skipped ahead (no burst)
    keyframe_requests: int = 0  # PLIs and FIRs that reached it


class LoopingPacketTrack(MediaStreamTrack):
    """Yields a clip's pre-encoded ``av.Packet``s forever, paced in real time.

    The packets are shared by every track in the process: ``recv`` stamps ``pts`` and
    ``time_base`` on the shared object just before returning it, which is safe because
    aiortc's sender calls ``pack()`` right after ``recv()`` returns, with no await in
    between (rtcrtpsender.py ``_next_encoded_frame``).
    """

    LATE_S = 0.05
    RESYNC_S = 1.0  # this far behind, skip ahead instead of bursting to catch up

    def __init__(self, clip: EncodedClip) -> None:
        super().__init__()
        self.kind = clip.kind
        self._clip = clip
        self._time_base = fractions.Fraction(1, clip.clock)
        self._index = 0  # position in the clip
        self._frame = 0  # frames sent since start: the pts, in frame units
        self._start: float | None = None
        self._keyframe_wanted = False
        self.stats = SendStats()

    def request_keyframe(self) -> None:
        """Called (through the sender hook) when a PLI or FIR arrives for this track."""
        self._keyframe_wanted = True
        self.stats.keyframe_requests += 1

    async def recv(self) -> av.Packet:  # type: ignore[override]
        clip = self._clip
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._frame * clip.frame_seconds
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        elif -wait > self.RESYNC_S:
            self.stats.resyncs += 1
            self._start = time.monotonic() - self._frame * clip.frame_seconds
        elif -wait > self.LATE_S:
            self.stats.late += 1
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            self._index = clip.next_keyframe(self._index)
        packet = clip.packets[self._index]
        packet.pts = self._frame * clip.ticks_per_frame
        packet.dts = packet.pts
        packet.time_base = self._time_base
        self._index = (self._index + 1) % len(clip.packets)
        self._frame += 1
        self.stats.frames += 1
        return packet


def hook_keyframe_requests(sender: RTCRtpSender, track: LoopingPacketTrack) -> None:
    """Route the sender's keyframe requests (PLI/FIR) to the track, per instance."""
    hook_sender_keyframe(sender, track.request_keyframe)
