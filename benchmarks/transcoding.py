"""The recorder benchmark's baseline: what a transcoding recorder (aiortc's
``MediaRecorder`` approach) must at least do, decode every frame and encode it again."""

from __future__ import annotations

import fractions
import gc
import time
from typing import Any

import av
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RtpPacket

from .media import EncodedClip
from .visit_packets import Track


class Transcoder:
    """Decode one track's frames and encode them again, as a transcoding recorder must."""

    def __init__(self, track: Track, bitrate_bps: int, gop: int) -> None:
        self.video = track.kind == "video"
        self.time_base = fractions.Fraction(1, track.codec.clockRate)
        self.parts: list[bytes] = []
        self.first_ts: int | None = None
        self.frames_in = self.frames_decoded = self.bytes_out = 0
        self._bitrate = bitrate_bps
        self._gop = gop
        self.decoder = av.CodecContext.create("libvpx" if self.video else "libopus", "r")
        self.decoder.thread_count = 1
        if not self.video:  # aiortc's OpusDecoder settings
            self.decoder.format = "s16"
            self.decoder.layout = "stereo"
            self.decoder.sample_rate = 48_000
        self.encoder: Any = None

    def packet(self, packet: RtpPacket) -> None:
        # Depayload as aiortc's receiver does: VP8 frames end at the marker bit.
        self.parts.append(vp8_depayload(packet.payload) if self.video else packet.payload)
        if self.video and not packet.marker:
            return
        data, self.parts = b"".join(self.parts), []
        if self.first_ts is None:
            self.first_ts = packet.timestamp
        encoded = av.Packet(data)
        encoded.pts = (packet.timestamp - self.first_ts) & 0xFFFFFFFF
        encoded.time_base = self.time_base
        self.frames_in += 1
        for frame in self.decoder.decode(encoded):
            self.frames_decoded += 1
            self._encode(frame)

    def _encode(self, frame: Any) -> None:
        if self.encoder is None:
            self.encoder = self._open_encoder(frame)
        for out in self.encoder.encode(frame):
            self.bytes_out += out.size

    def flush(self) -> None:
        for frame in self.decoder.decode(None):
            self.frames_decoded += 1
            self._encode(frame)
        if self.encoder is not None:
            for out in self.encoder.encode(None):
                self.bytes_out += out.size

    def _open_encoder(self, frame: Any) -> Any:
        bitrate = str(self._bitrate)
        if self.video:
            # The cheapest real-time libvpx setting (benchmarks/media.py's, CBR at the
            # clip's bitrate, the clip's GOP): MediaRecorder's own defaults cost more.
            encoder = av.CodecContext.create("libvpx", "w")
            encoder.width, encoder.height = frame.width, frame.height
            encoder.pix_fmt = "yuv420p"
            encoder.time_base = self.time_base
            encoder.framerate = fractions.Fraction(30, 1)
            encoder.gop_size = self._gop
            encoder.qmin, encoder.qmax = 2, 56
            encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                               "minrate": bitrate, "maxrate": bitrate, "bufsize": bitrate}
        else:
            encoder = av.CodecContext.create("libopus", "w")
            encoder.sample_rate = 48_000
            encoder.layout = "stereo"
            encoder.format = "s16"
            encoder.time_base = fractions.Fraction(1, 48_000)
            # Constrained VBR: plain VBR overshoots the target by a third on this tone.
            encoder.options = {"application": "voip", "frame_duration": "20",
                               "vbr": "constrained"}
        encoder.bit_rate = self._bitrate
        encoder.thread_count = 1
        return encoder


def run_baseline(tracks: list[Track], schedule: list[tuple[float, int, RtpPacket]],
                 video: EncodedClip, audio: EncodedClip) -> dict[str, Any]:
    """The same packets, in the same order, through decode + re-encode. CPU-timed."""
    gop = video.keyframes[1] - video.keyframes[0] if len(video.keyframes) > 1 else 3000
    gc.collect()
    cpu0, wall0 = time.process_time(), time.monotonic()
    coders = [Transcoder(t, round((video if t.kind == "video" else audio).bitrate_bps), gop)
              for t in tracks]
    for _, index, packet in schedule:
        coders[index].packet(packet)
    for coder in coders:
        coder.flush()
    cpu1, wall1 = time.process_time(), time.monotonic()
    return {"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "coders": coders}
