"""One recorded visit's RTP packets, made up front as the parties' browsers would send
them: aiortc's packetizers, random first sequence numbers, timestamps and picture ids,
marker bits, and arrival times with network delay, jitter and pacing."""

from __future__ import annotations

import fractions
import random
from dataclasses import dataclass, field

import av
from aiortc import RTCRtpCodecParameters
from aiortc.codecs import get_encoder
from aiortc.rtp import RtpPacket

from .media import EncodedClip

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2,
                             payloadType=111)


NETWORK_DELAY_S = 0.03
JITTER_S = 0.004  # per frame, uniform: less than a frame interval, so no reordering
PACING_S = 0.0003  # between the packets of one frame, as a sender's pacer spreads them
AUDIO_START_S = 0.2  # the microphone starts before the camera, as in a browser
VIDEO_START_S = 0.5
PARTY_STAGGER_S = 0.05


@dataclass
class Track:
    """One published track: its packets, made once, with their arrival times."""

    party: str
    kind: str
    codec: RTCRtpCodecParameters
    frames: int = 0
    packets: list[tuple[float, RtpPacket]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.party}-{self.kind}"


def party_names(count: int) -> list[str]:
    return ["inmate"] + [f"visitor{n}" for n in range(1, count)]


def packetize(party: str, clip: EncodedClip, codec: RTCRtpCodecParameters, seconds: float,
              start: float, rng: random.Random) -> Track:
    """``seconds`` of the looping clip as the browser of ``party`` would send it."""
    track = Track(party, clip.kind, codec)
    encoder = get_encoder(codec)  # aiortc's packetizer (``pack``), as RTCRtpSender uses it
    if hasattr(encoder, "picture_id"):
        encoder.picture_id = rng.randrange(1 << 15)
    time_base = fractions.Fraction(1, clip.clock)
    seq = rng.randrange(1 << 16)
    first_ts = rng.randrange(1 << 32)
    ssrc = rng.randrange(1, 1 << 32)
    video = clip.kind == "video"
    track.frames = round(seconds / clip.frame_seconds)
    for n in range(track.frames):
        source = clip.packets[n % len(clip.packets)]
        packet = av.Packet(bytes(source))
        packet.pts = n * clip.ticks_per_frame
        packet.time_base = time_base
        payloads, ts = encoder.pack(packet)
        sent = start + n * clip.frame_seconds
        arrival = sent + NETWORK_DELAY_S + rng.uniform(0.0, JITTER_S)
        for i, payload in enumerate(payloads):
            # Video: marker on a frame's last packet. Opus: marker on the first packet of
            # a talk spurt, here the first one (no DTX), as browsers do.
            marker = (i == len(payloads) - 1) if video else n == 0
            track.packets.append((arrival + i * PACING_S, RtpPacket(
                payload_type=codec.payloadType, marker=int(marker), sequence_number=seq,
                timestamp=(first_ts + ts) & 0xFFFFFFFF, ssrc=ssrc, payload=payload)))
            seq = (seq + 1) & 0xFFFF
    return track


def make_visit(parties: int, seconds: float, video: EncodedClip, audio: EncodedClip,
               seed: int = 1) -> tuple[list[Track], list[tuple[float, int, RtpPacket]]]:
    """Every track of the visit and one schedule of all their packets in arrival order."""
    rng = random.Random(seed)
    tracks: list[Track] = []
    for index, party in enumerate(party_names(parties)):
        offset = index * PARTY_STAGGER_S
        tracks.append(packetize(party, video, VP8, seconds, VIDEO_START_S + offset, rng))
        tracks.append(packetize(party, audio, OPUS, seconds, AUDIO_START_S + offset, rng))
    schedule = sorted(((arrival, index, packet) for index, track in enumerate(tracks)
                       for arrival, packet in track.packets), key=lambda item: item[:2])
    return tracks, schedule
