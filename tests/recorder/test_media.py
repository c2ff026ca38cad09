"""Real media for the recorder tests: a simulated browser publisher and a file checker.

Video and audio are encoded by aiortc's own encoders (libvpx, libx264, libopus) and
packetized into ``RtpPacket`` objects the way a browser sends them, with sequence numbers
and timestamps that wrap during the test. The publisher answers keyframe requests (PLI) by
forcing the next frame to be a keyframe, like a browser. The other test_recorder_* modules
import these helpers; the tests here check the generator itself.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.logging
from aiortc.codecs.vpx import vp8_depayload

from tests.support.media import OPUS, VIDEO_TIME_BASE, VP8, Publisher, decode


def test_publisher_packets_are_real_media() -> None:
    publisher = Publisher(VP8)
    frames = publisher.frames()
    _, first = next(frames)
    _, second = next(frames)
    assert first[-1].marker and not first[0].marker
    assert second[0].sequence_number == (first[-1].sequence_number + 1) & 0xFFFF
    assert second[0].timestamp == (first[0].timestamp + 6000) & 0xFFFFFFFF
    audio = Publisher(OPUS).frames()
    t0, [p0] = next(audio)
    t1, [p1] = next(audio)
    assert t1 - t0 == 0.02 and (p1.timestamp - p0.timestamp) & 0xFFFFFFFF == 960


def test_decode_reports_corrupt_media(tmp_path: Path) -> None:
    """The checker must see decode errors, or the zero-error assertions mean nothing."""
    path = tmp_path / "broken.webm"
    publisher = Publisher(VP8)
    with av.open(str(path), "w", format="webm") as output:
        stream = output.add_mux_stream("vp8", width=320, height=240,
                                       time_base=VIDEO_TIME_BASE)
        for index, (_, packets) in zip(range(10), publisher.frames(), strict=False):
            if index == 0:
                continue  # no keyframe: every frame lacks its reference
            packet = av.Packet(b"".join(vp8_depayload(p.payload) for p in packets))
            packet.pts = packet.dts = index * 6000
            packet.time_base = VIDEO_TIME_BASE
            packet.stream = stream
            output.mux(packet)
    assert decode(path).errors
