"""Encoded frames for segment writer tests, as the track recorder hands them over."""

from __future__ import annotations

from aiortc.codecs import depayload

from recorder.segments import SegmentWriter
from tests.support.media import VP8, Publisher

ORIGIN = 123_456  # pts of the first frame: a track that started 1.37 s into the visit


def frames_of(publisher: Publisher, count: int) -> list[tuple[bytes, int, bool]]:
    """(data, pts, keyframe) of the first ``count`` frames, pts starting at ORIGIN."""
    out = []
    first_ts = None
    for _, packets in publisher.frames():
        data = b"".join(depayload(publisher.codec, p.payload) for p in packets)
        ts = packets[0].timestamp
        first_ts = ts if first_ts is None else first_ts
        keyframe = publisher.kind == "audio" or not out or (
            publisher.codec is VP8 and not data[0] & 1)
        out.append((data, ORIGIN + ((ts - first_ts) & 0xFFFFFFFF), keyframe))
        if len(out) == count:
            return out
    raise AssertionError("unreachable")


def write_all(writer: SegmentWriter, frames: list[tuple[bytes, int, bool]]) -> None:
    for data, pts, keyframe in frames:
        writer.write(data, pts, keyframe)
        writer.flush()  # as the track recorder does after each batch
