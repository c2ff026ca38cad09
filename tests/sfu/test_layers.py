"""TemporalFilter on VP8 from a real libvpx L1T3 encode: the cheap stream decodes cleanly."""

from __future__ import annotations

import numpy as np
import pytest

from sfu.layers import ALL_LAYERS, PAUSED, TemporalFilter, parse
from tests.support.vp8_layers import (
    decode_vp8,
    depacketize,
    encode_l1t3,
    layered_stream,
    moving_frames,
)

FRAMES = 24


@pytest.fixture(scope="module")
def stream() -> list[tuple[int, list[bytes]]]:
    return layered_stream(encode_l1t3(moving_frames(FRAMES)))


def run(filt: TemporalFilter, stream: list[tuple[int, list[bytes]]], first_seq: int = 65530,
        switch_at: dict[int, int] | None = None) -> list[tuple[int, int, list[bytes]]]:
    """(frame index, first compacted seq, payloads) of each frame the filter forwards."""
    seq = first_seq
    out = []
    for n, (_, payloads) in enumerate(stream):
        if switch_at and n in switch_at:
            filt.target = switch_at[n]
        kept = []
        first = None
        for payload in payloads:
            result = filt.admit(seq, payload)
            seq = (seq + 1) % 65536
            if result is not None:
                first = result[0] if first is None else first
                kept.append(result)
        if kept:
            assert len(kept) == len(payloads), "a frame is forwarded whole or not at all"
            out.append((n, first, [p for _, p in kept]))
            assert [s for s, _ in kept] == [(first + i) % 65536 for i in range(len(kept))]
    return out


def test_layer_zero_only_is_a_clean_stream_that_decodes_like_the_full_one(stream) -> None:  # type: ignore[no-untyped-def]
    full = decode_vp8([depacketize(p) for _, p in stream])
    forwarded = run(TemporalFilter(target=0), stream)
    assert [n for n, _, _ in forwarded] == list(range(0, FRAMES, 4))
    # No hole in the sequence numbers between frames (a hole is a loss to the receiver).
    seqs = [first for _, first, _ in forwarded]
    for (_, first, payloads), following in zip(forwarded, seqs[1:], strict=False):
        assert following == (first + len(payloads)) % 65536
    # Picture IDs step by one; TL0PICIDX too; every packet says layer 0.
    descriptors = [parse(p[0]) for _, _, p in forwarded]
    assert [d.picture_id for d in descriptors] == list(range(100, 100 + len(forwarded)))
    assert all(d.tid == 0 for d in descriptors)
    assert [p[0][4] for _, _, p in forwarded] == list(range(len(forwarded)))
    # What the grid tile decodes is exactly what a full-rate viewer sees at those frames.
    cheap = decode_vp8([depacketize(p) for _, _, p in forwarded])
    assert len(cheap) == len(forwarded)
    for (n, _, _), image in zip(forwarded, cheap, strict=True):
        assert np.array_equal(image, full[n]), f"frame {n} differs"


def test_switching_up_waits_for_a_layer_zero_frame_then_forwards_everything(stream) -> None:  # type: ignore[no-untyped-def]
    filt = TemporalFilter(target=0)
    forwarded = run(filt, stream, switch_at={5: 2, 17: 0})
    # Asked at frame 5 (layer 2): full rate from frame 8, the next layer-0 frame; back
    # down to layer 0 from frame 20.
    assert [n for n, _, _ in forwarded] == [0, 4, *range(8, 20), 20]
    ids = [parse(p[0]).picture_id for _, _, p in forwarded]
    assert ids == list(range(100, 100 + len(forwarded)))
    full = decode_vp8([depacketize(p) for _, p in stream])
    for (n, _, _), image in zip(forwarded, decode_vp8([depacketize(p) for _, _, p in forwarded]),
                                strict=True):
        assert np.array_equal(image, full[n]), f"frame {n} differs"


def test_a_paused_stream_stops_at_the_next_frame_whatever_its_layer(stream) -> None:  # type: ignore[no-untyped-def]
    filt = TemporalFilter(target=ALL_LAYERS)
    forwarded = run(filt, stream, switch_at={6: PAUSED})  # frame 6 is not layer 0
    assert [n for n, _, _ in forwarded] == list(range(6))
    filt = TemporalFilter(target=ALL_LAYERS)
    filt.pause()
    assert run(filt, stream) == []


def test_a_nack_maps_back_to_the_source_packet(stream) -> None:  # type: ignore[no-untyped-def]
    filt = TemporalFilter(target=0)
    seq = 65530
    sources = {}
    for _, payloads in stream:
        for payload in payloads:
            result = filt.admit(seq, payload)
            if result is not None:
                sources[result[0]] = seq
            seq = (seq + 1) % 65536
    assert sources and all(filt.original(c) == s for c, s in sources.items())


def test_a_stream_without_layers_passes_unchanged() -> None:
    filt = TemporalFilter(target=0)
    plain = [bytes([0x90, 0x80, 0x80 | 1, n]) + b"\x00frame" for n in range(5)]
    assert [filt.admit(10 + i, p) for i, p in enumerate(plain)] == [
        (10 + i, p) for i, p in enumerate(plain)]
    assert parse(b"\x80") is None  # truncated: X set, no extension byte
