"""Real media for the recorder tests: a simulated browser publisher and a file checker."""

from __future__ import annotations

import fractions
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.logging
import numpy as np
from aiortc import RTCRtpCodecParameters
from aiortc.codecs import get_encoder
from aiortc.rtp import RtpPacket

from tests.support.clock import FakeClock

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102,
                             parameters={"packetization-mode": "1"})


OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                             payloadType=111)


VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


AUDIO_TIME_BASE = fractions.Fraction(1, 48000)


class Publisher:
    """One published track. ``frames()`` yields (send time, packets) per encoded frame,
    encoding lazily so that a keyframe request takes effect on the next frame."""

    def __init__(self, codec: RTCRtpCodecParameters, *, width: int = 320, height: int = 240,
                 fps: int = 15, bitrate: int | None = None, seed: int = 0,
                 first_seq: int = 65400, first_ts: int = (1 << 32) - 90000,
                 start: float = 0.0, noise: int = 24) -> None:
        self.codec = codec
        self.kind = "audio" if codec.mimeType.startswith("audio/") else "video"
        self.encoder = get_encoder(codec)
        if bitrate is not None:
            self.encoder.target_bitrate = bitrate
        self.width, self.height, self.fps = width, height, fps
        self.seq = first_seq
        self.first_ts = first_ts
        self.start = start
        self.noise = noise  # camera noise: what makes the encoder spend its bitrate
        self.rng = np.random.default_rng(seed)
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self._force_keyframe = True
        self._index = 0
        self._base = self._pattern(width, height) if self.kind == "video" else None

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._force_keyframe = True

    @staticmethod
    def _pattern(width: int, height: int) -> np.ndarray:
        y, x = np.mgrid[0:height, 0:width]
        return ((x * 3 + y * 2) % 256).astype(np.uint8)

    @property
    def next_send_time(self) -> float:
        interval = 1 / self.fps if self.kind == "video" else 0.02
        return self.start + self._index * interval

    def frames(self) -> Iterator[tuple[float, list[RtpPacket]]]:
        """The publisher's frames from where it stopped (calls share one capture clock)."""
        while True:
            index = self._index
            self._index += 1
            if self.kind == "video":
                send_time, payloads, ts = self._video_frame(index)
            else:
                send_time, payloads, ts = self._audio_frame(index)
            if not payloads:
                continue
            packets = []
            for i, payload in enumerate(payloads):
                marker = int(i == len(payloads) - 1) if self.kind == "video" else 0
                packets.append(RtpPacket(payload_type=self.codec.payloadType, marker=marker,
                                         sequence_number=self.seq,
                                         timestamp=(self.first_ts + ts) & 0xFFFFFFFF,
                                         ssrc=1234, payload=payload))
                self.seq = (self.seq + 1) & 0xFFFF
                self.bytes_sent += len(payload)
            self.frames_sent += 1
            yield send_time, packets

    def _video_frame(self, index: int) -> tuple[float, list[bytes], int]:
        h, w = self.height, self.width
        assert self._base is not None
        luma = np.roll(self._base, (index * 2, index * 3), axis=(0, 1))
        luma = luma + self.rng.integers(0, self.noise, size=luma.shape, dtype=np.uint8)
        box = (index * 4) % (w - 40)
        luma[h // 3:h // 3 + 40, box:box + 40] = 235
        chroma = np.full((h // 2, w), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p")
        frame.pts = index * (90000 // self.fps)
        frame.time_base = VIDEO_TIME_BASE
        force, self._force_keyframe = self._force_keyframe, False
        payloads, ts = self.encoder.encode(frame, force)
        if force:
            self.keyframes_sent += 1
        return self.start + index / self.fps, payloads, ts

    def _audio_frame(self, index: int) -> tuple[float, list[bytes], int]:
        t = np.arange(960) + index * 960
        tone = 300 + 200 * ((index // 25) % 4)  # a different pitch every 0.5 s
        samples = (np.sin(2 * np.pi * tone * t / 48000) * 6000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(samples, 2).reshape(1, -1),
                                           format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = index * 960
        frame.time_base = AUDIO_TIME_BASE
        payloads, ts = self.encoder.encode(frame)
        return self.start + index * 0.02, payloads, ts


@dataclass
class Network:
    """Delivers packets with a delay, optional seeded loss and occasional duplicates."""

    delay: float = 0.03  # seconds from sending a frame's first packet to its arrival
    loss: float = 0.0  # the chance that a packet is dropped
    duplicate: float = 0.0  # the chance that a delivered packet arrives again 20 ms later
    seed: int = 1  # of the loss and duplicate draws, so a run can be repeated
    lost: int = field(default=0, init=False)  # packets dropped so far
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def deliver(self, send_time: float, packets: list[RtpPacket]
                ) -> list[tuple[float, RtpPacket]]:
        out = []
        for i, packet in enumerate(packets):
            arrival = send_time + self.delay + i * 0.0002  # paced out by the sender
            if self.rng.random() < self.loss:
                self.lost += 1
                continue
            out.append((arrival, packet))
            if self.rng.random() < self.duplicate:  # a retransmission of a received packet
                out.append((arrival + 0.02, packet))
        return sorted(out, key=lambda item: item[0])


def run(tracks: list[tuple[Publisher, Callable[[RtpPacket, float], None]]],
        seconds: float, clock: FakeClock, network: Network | None = None) -> None:
    """Feed every track's packets to its consumer in arrival order, for ``seconds``, with
    the fake clock following the arrivals. Encoding is interleaved across tracks by send
    time so that keyframe requests reach the publisher as they would in a call."""
    network = network or Network()
    streams = [(publisher, publisher.frames(), consumer) for publisher, consumer in tracks]
    base = clock.now
    while True:
        publisher, frames, consumer = min(streams, key=lambda s: s[0].next_send_time)
        if publisher.next_send_time >= seconds:
            break
        send_time, packets = next(frames)
        for arrival, packet in network.deliver(send_time, packets):
            clock.now = base + arrival
            consumer(packet, clock.now)


@dataclass
class Decoded:
    packets: int
    frames: int
    errors: list[str]
    first_packet_keyframe: bool
    first_s: float
    last_s: float
    extradata: bytes | None
    width: int


def decode(path: Path) -> Decoded:
    """Decode every packet of a file as a player would, collecting every decoder error
    (exceptions and FFmpeg error log lines)."""
    errors: list[str] = []
    packets = frames = 0
    first_keyframe = False
    times: list[float] = []
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as container:
            stream = container.streams[0]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packets == 0:
                    first_keyframe = packet.is_keyframe
                packets += 1
                assert packet.pts is not None and packet.time_base is not None
                times.append(float(packet.pts * packet.time_base))
                try:
                    frames += len(stream.codec_context.decode(packet))
                except av.error.FFmpegError as error:
                    errors.append(f"decode: {error}")
            try:
                frames += len(stream.codec_context.decode(None))
            except av.error.FFmpegError as error:
                errors.append(f"flush: {error}")
            extradata = stream.codec_context.extradata
            width = getattr(stream.codec_context, "width", 0)
        errors += [f"log: {name}: {message}" for level, name, message in logs
                   if level is not None and level <= av.logging.ERROR]
    finally:
        av.logging.set_level(previous_level)
    return Decoded(packets, frames, errors, first_keyframe, min(times, default=0.0),
                   max(times, default=0.0), extradata, width)


def concatenate(paths: list[Path], out: Path) -> None:
    """Join segments by stream copy (no decoding), the way the end-of-visit join does."""
    with av.open(str(out), "w") as output:
        target = None
        for path in paths:
            with av.open(str(path)) as source:
                stream = source.streams[0]
                if target is None:
                    target = output.add_stream_from_template(stream)
                for packet in source.demux(stream):
                    if packet.size == 0:
                        continue
                    packet.stream = target
                    output.mux(packet)

