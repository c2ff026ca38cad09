"""VP8 with three temporal layers (L1T3) from real libvpx, packetized per RFC 7741.

libvpx encodes the layer pattern 0, 2, 1, 2 (``ts_layer_id``): frame n is in layer
``PATTERN[n % 4]`` and layer 0 never refers to a higher one. aiortc's own packetizer
writes only a picture ID, so ``packetize`` writes the full descriptor (picture ID,
TL0PICIDX, TID and the layer-sync bit) the way a browser sending L1T3 does.
"""

from __future__ import annotations

import fractions
from struct import pack

import av
import numpy as np
from aiortc.codecs import vpx

from benchmarks.media import VIDEO_CLOCK, EncodedClip

PATTERN = (0, 2, 1, 2)
SYNC = (False, True, True, False)  # frames 1 and 2 of the pattern refer to layer 0 only
# ts_layering_mode=3 makes libvpx set each frame's reference flags for the pattern;
# without it the layer ids are only labels and layer 0 still refers to every frame.
FPS = 30
TS_PARAMETERS = ("ts_layering_mode=3:ts_number_layers=3:ts_target_bitrate={0},{1},{2}"
                 ":ts_rate_decimator=4,2,1:ts_periodicity=4:ts_layer_id=0,2,1,2")


def moving_frames(count: int, width: int = 320, height: int = 240) -> list[np.ndarray]:
    """A pattern that moves every frame, so every frame differs from its references."""
    y, x = np.mgrid[0:height, 0:width]
    return [np.stack([((x * 3 + y * 2 + 7 * n) % 256).astype(np.uint8),
                      ((x - y * 3 + 5 * n) % 256).astype(np.uint8),
                      ((x * y // 64 + 11 * n) % 256).astype(np.uint8)], axis=-1)
            for n in range(count)]


def encode_l1t3(images: list[np.ndarray], fps: int = 30, bitrate_kbps: int = 600,
                keyframe_every: int = 0) -> list[bytes]:
    """One encoded frame per image, in L1T3 (the first frame a keyframe)."""
    height, width = images[0].shape[:2]
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate_kbps * 1000
    rates = (bitrate_kbps * 4 // 10, bitrate_kbps * 6 // 10, bitrate_kbps)
    codec.options = {"ts-parameters": TS_PARAMETERS.format(*rates), "deadline": "realtime",
                     "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
    frames: list[bytes] = []
    for n, img in enumerate(images):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        if keyframe_every and n % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        frames.extend(bytes(p) for p in codec.encode(frame))
    frames.extend(bytes(p) for p in codec.encode(None))
    if len(frames) != len(images):
        raise RuntimeError(f"libvpx gave {len(frames)} frames for {len(images)} images")
    return frames


def packetize(frame: bytes, picture_id: int, tl0picidx: int, tid: int, sync: bool = False,
              max_payload: int = 1100) -> list[bytes]:
    """RTP payloads of one frame: descriptor with X, I (15-bit), L and T set; ``sync``
    (Y) marks a frame that refers to layer 0 only, where a receiver can switch up."""
    payloads = []
    for pos in range(0, len(frame), max_payload):
        start = 0x10 if pos == 0 else 0x00
        descriptor = pack("!BBHBB", 0x80 | start, 0xE0, 0x8000 | (picture_id & 0x7FFF),
                          tl0picidx & 0xFF, (tid << 6) | (int(sync) << 5))
        payloads.append(descriptor + frame[pos:pos + max_payload])
    return payloads


def layered_stream(frames: list[bytes], first_picture_id: int = 100
                   ) -> list[tuple[int, list[bytes]]]:
    """(temporal layer, payloads) per frame, numbered as a publisher would."""
    out = []
    tl0 = 0
    for n, frame in enumerate(frames):
        tid = PATTERN[n % len(PATTERN)]
        if tid == 0 and n:
            tl0 += 1
        out.append((tid, packetize(frame, first_picture_id + n, tl0, tid,
                                   SYNC[n % len(PATTERN)])))
    return out


def depacketize(payloads: list[bytes]) -> bytes:
    """The VP8 frame behind one frame's payloads (this module's 6-byte descriptor)."""
    return b"".join(p[6:] for p in payloads)


def decode_vp8(frames: list[bytes]) -> list[np.ndarray]:
    decoder = av.CodecContext.create("libvpx", "r")
    images = []
    for data in frames:
        for frame in decoder.decode(av.Packet(data)):
            images.append(frame.to_ndarray(format="gray"))
    return images


LAYER_OF: dict[int, int] = {}  # id of a clip's av.Packet -> its place in PATTERN
_plain_pack = vpx.Vp8Encoder.pack


def layered_pack(self: vpx.Vp8Encoder, packet: av.Packet) -> tuple[list[bytes], int]:
    """``Vp8Encoder.pack`` for a ``layered_clip`` frame (others go to aiortc's own)."""
    place = LAYER_OF.get(id(packet))
    if place is None:
        return _plain_pack(self, packet)
    tid = PATTERN[place]
    tl0 = getattr(self, "tl0picidx", -1) + (1 if tid == 0 else 0)
    self.tl0picidx = tl0  # type: ignore[attr-defined]
    payloads = packetize(bytes(packet), self.picture_id, tl0, tid, SYNC[place])
    self.picture_id = (self.picture_id + 1) % (1 << 15)
    return payloads, vpx.convert_timebase(packet.pts, packet.time_base, vpx.VIDEO_TIME_BASE)


def layered_clip(seconds: int = 4, keyframe_every: int = 60, width: int = 320,
                 height: int = 240, bitrate_kbps: int = 600) -> EncodedClip:
    """A looping L1T3 clip for ``benchmarks.media.LoopingPacketTrack`` (keyframes on a
    layer-0 frame, so a jump to one keeps the pattern)."""
    frames = encode_l1t3(moving_frames(seconds * FPS, width, height), FPS, bitrate_kbps,
                         keyframe_every)
    packets = [av.Packet(f) for f in frames]
    for n, packet in enumerate(packets):
        LAYER_OF[id(packet)] = n % len(PATTERN)
    keys = list(range(0, len(packets), keyframe_every))
    return EncodedClip("video", packets, keys, VIDEO_CLOCK // FPS, VIDEO_CLOCK)
