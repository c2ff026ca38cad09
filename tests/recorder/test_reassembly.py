"""FrameAssembler on real encoded media: VP8, H.264 and Opus packets from aiortc's encoders,
delivered in order, reordered, duplicated, lost and late."""

from __future__ import annotations

import random
from itertools import islice, pairwise

import pytest
from aiortc.codecs import depayload
from aiortc.rtp import RtpPacket

from recorder.reassembly import FrameAssembler, vp8_is_keyframe, vp8_payload
from tests.support.media import H264, OPUS, VP8, Publisher


def encoded(publisher: Publisher, count: int) -> list[tuple[float, list[RtpPacket]]]:
    return list(islice(publisher.frames(), count))


def expected(publisher: Publisher, packets: list[RtpPacket]) -> bytes:
    return b"".join(depayload(publisher.codec, p.payload) for p in packets)


def assembler_for(publisher: Publisher, **kwargs: float) -> FrameAssembler:
    codec = publisher.codec
    return FrameAssembler(publisher.kind, codec.mimeType, codec.clockRate, **kwargs)


def test_vp8_frames_are_rebuilt_across_sequence_and_timestamp_wraparound() -> None:
    publisher = Publisher(VP8, first_seq=65530, first_ts=(1 << 32) - 6000 * 3)
    frames_in = encoded(publisher, 12)
    assembler = assembler_for(publisher)
    frames = []
    for send_time, packets in frames_in:
        for packet in packets:
            frames += assembler.push(packet, send_time)
    assert [f.data for f in frames] == [expected(publisher, p) for _, p in frames_in]
    timestamps = [f.rtp_timestamp_unwrapped for f in frames]
    assert all(abs(b - a - 6000) <= 1 for a, b in pairwise(timestamps))
    assert timestamps[-1] > 1 << 32  # unwrapped, not wrapped back to 0
    assert [f.keyframe for f in frames] == [True] + [False] * 11
    assert frames[0].arrival == 0.0 and not assembler.needs_keyframe


def test_vp8_keyframe_needs_p_bit_clear_and_start_code() -> None:
    publisher = Publisher(VP8)
    (_, key), (_, delta) = encoded(publisher, 2)
    keyframe = expected(publisher, key)
    assert vp8_is_keyframe(keyframe)
    assert not vp8_is_keyframe(expected(publisher, delta))
    assert not vp8_is_keyframe(keyframe[:3] + b"\x00\x00\x00" + keyframe[6:])


def test_reordered_and_duplicated_packets_give_the_same_frames_in_order() -> None:
    publisher = Publisher(VP8)
    frames_in = encoded(publisher, 20)
    arrivals = []
    for send_time, packets in frames_in:
        for i, packet in enumerate(packets):
            arrivals.append((send_time + i * 0.0002, packet))
            arrivals.append((send_time + 0.03, packet))  # a retransmission arrives later
    rng = random.Random(3)
    # Reorder within 15 ms: packets of neighbouring frames (66 ms apart) stay apart.
    arrivals.sort(key=lambda a: a[0] + rng.uniform(0, 0.015))
    assembler = assembler_for(publisher)
    frames = []
    for arrival, packet in arrivals:
        frames += assembler.push(packet, arrival)
    assert [f.data for f in frames] == [expected(publisher, p) for _, p in frames_in]


def test_a_lost_packet_drops_frames_until_the_next_keyframe() -> None:
    publisher = Publisher(VP8)
    frames_in = encoded(publisher, 6)
    publisher.request_keyframe()
    frames_in += encoded(publisher, 3)
    assembler = assembler_for(publisher)
    out = []
    waiting = []
    for index, (send_time, packets) in enumerate(frames_in):
        for i, packet in enumerate(packets):
            if index == 2 and i == 0:
                continue  # lost
            out += [(index, f) for f in assembler.push(packet, send_time)]
        waiting.append(assembler.needs_keyframe)
    # Frame 2 is incomplete; 3..5 reference it; the hole is declared lost at frame 3
    # (one frame interval is longer than the 50 ms window); 6 is the keyframe asked for.
    assert [i for i, _ in out] == [0, 1, 6, 7, 8]
    assert out[2][1].keyframe
    assert waiting == [False, False, False, True, True, True, False, False, False]


def test_a_packet_later_than_the_window_is_dropped_not_muxed_out_of_order() -> None:
    publisher = Publisher(OPUS)
    frames_in = encoded(publisher, 10)
    assembler = assembler_for(publisher)
    late = frames_in[3][1][0]
    out = []
    for send_time, [packet] in frames_in:
        if packet is not late:
            out += assembler.push(packet, send_time)
    out += assembler.push(late, 0.3)
    timestamps = [f.rtp_timestamp_unwrapped for f in out]
    assert len(out) == 9 and timestamps == sorted(timestamps)
    assert not assembler.needs_keyframe  # every Opus frame stands alone


def test_every_opus_packet_is_a_keyframe_frame_whatever_its_marker() -> None:
    publisher = Publisher(OPUS)
    frames_in = encoded(publisher, 5)
    frames_in[0][1][0].marker = 1  # a talk spurt starts
    assembler = assembler_for(publisher)
    out = []
    for send_time, [packet] in frames_in:
        out += assembler.push(packet, send_time)
    assert [f.data for f in out] == [p.payload for _, [p] in frames_in]
    assert all(f.keyframe for f in out)


def test_padding_only_packets_between_frames_are_not_a_loss() -> None:
    publisher = Publisher(VP8)
    stream = []
    for send_time, packets in encoded(publisher, 4):
        stream += [(send_time, p) for p in packets]
        for _ in range(2):  # a bandwidth probe: padding only, the last frame's timestamp
            stream.append((send_time, RtpPacket(payload_type=96,
                                                timestamp=packets[-1].timestamp)))
    assembler = assembler_for(publisher)
    out = []
    for seq, (send_time, packet) in enumerate(stream):
        packet.sequence_number = seq
        out += assembler.push(packet, send_time)
    assert len(out) == 4 and not assembler.needs_keyframe


def test_reordering_at_the_very_start_keeps_the_first_keyframe() -> None:
    publisher = Publisher(VP8)
    (t0, first), (t1, second) = encoded(publisher, 2)
    assembler = assembler_for(publisher)
    out = []
    for packet in [first[1], first[0], *first[2:]]:
        out += assembler.push(packet, t0)
    for packet in second:
        out += assembler.push(packet, t1)
    assert [f.keyframe for f in out] == [True, False]


def test_h264_fu_a_and_stap_a_access_units_and_idr_keyframes() -> None:
    publisher = Publisher(H264, width=640, height=480)  # keyframes need FU-A
    frames_in = encoded(publisher, 5)
    publisher.request_keyframe()
    frames_in += encoded(publisher, 3)
    assert any(p.payload[0] & 0x1F == 28 for p in frames_in[0][1])  # FU-A
    assert any(p.payload[0] & 0x1F == 24 for _, ps in frames_in for p in ps)  # STAP-A
    assembler = assembler_for(publisher)
    out = []
    for index, (send_time, packets) in enumerate(frames_in):
        for i, packet in enumerate(packets):
            if index == 1 and i == 0:
                continue  # lost: frames are dropped until the requested IDR
            out += [(index, f) for f in assembler.push(packet, send_time)]
    assert [i for i, _ in out] == [0, 5, 6, 7]
    assert [f.keyframe for _, f in out] == [True, True, False, False]
    assert [f.data for _, f in out] == [expected(publisher, frames_in[i][1])
                                         for i, _ in out]


def test_a_frame_without_its_marker_is_dropped_and_the_next_one_still_starts() -> None:
    publisher = Publisher(VP8)
    frames_in = encoded(publisher, 4)
    publisher.request_keyframe()
    frames_in += encoded(publisher, 1)
    frames_in[1][1][-1].marker = 0  # a sender bug: the frame never ends
    assembler = assembler_for(publisher)
    out = []
    for index, (send_time, packets) in enumerate(frames_in):
        for packet in packets:
            out += [(index, f) for f in assembler.push(packet, send_time)]
    assert [i for i, _ in out] == [0, 4]  # 2 and 3 reference the dropped frame


def test_held_packets_are_bounded_even_within_the_window() -> None:
    publisher = Publisher(OPUS)
    frames_in = encoded(publisher, 20)
    assembler = assembler_for(publisher, reorder_window_s=10.0, max_held=8)
    out = []
    for index, (send_time, [packet]) in enumerate(frames_in):
        if index != 2:
            out += assembler.push(packet, send_time)
    assert len(out) == 19  # the hole is given up after 8 held packets, not 10 s


def test_malformed_payload_counts_as_a_loss() -> None:
    publisher = Publisher(VP8)
    frames_in = encoded(publisher, 3)
    frames_in[1][1][0].payload = b"\x80"  # truncated VP8 payload descriptor
    assembler = assembler_for(publisher)
    out = []
    for send_time, packets in frames_in:
        for packet in packets:
            out += assembler.push(packet, send_time)
    assert len(out) == 1 and assembler.needs_keyframe


def test_unsupported_codec_is_refused() -> None:
    with pytest.raises(ValueError):
        FrameAssembler("video", "video/VP9", 90000)


def arrivals_with_trouble(publisher: Publisher,
                          rng: random.Random) -> list[tuple[float, RtpPacket]]:
    """A stream with every kind of trouble: loss, reordering, duplicates, padding probes,
    a malformed payload, a frame without its marker, and a later keyframe."""
    frames_in = encoded(publisher, 30)
    publisher.request_keyframe()
    frames_in += encoded(publisher, 20)
    out: list[tuple[float, RtpPacket]] = []
    for index, (send_time, packets) in enumerate(frames_in):
        for i, packet in enumerate(packets):
            if index not in (0, 30) and rng.random() < 0.03:
                continue  # lost (not from the keyframes: the test needs frames out)
            if index == 7 and i == 0:
                packet.payload = b"\x80"  # malformed
            if index == 33 and i == len(packets) - 1:
                packet.payload = packet.payload[:3]  # cut inside the VP8 descriptor
            if index == 31 and publisher.codec is VP8:
                # a longer descriptor (I and L bits: picture ID and TL0PICIDX), same frame
                head = packet.payload[0]
                packet.payload = bytes((head | 0x80, 0xC0, 0x80, 0x01, 0x07)) + vp8_payload(
                    packet.payload)[1]
            if index == 12:
                packet.marker = 0  # the frame never ends
            arrival = send_time + i * 0.0002 + rng.uniform(0, 0.01)
            out.append((arrival, packet))
            if rng.random() < 0.05:
                out.append((arrival + 0.03, packet))  # retransmitted
        if index % 9 == 0:
            out.append((send_time + 0.02, RtpPacket(
                payload_type=96, sequence_number=packets[-1].sequence_number,
                timestamp=packets[-1].timestamp)))  # a stray probe: a duplicate number
    out.sort(key=lambda a: a[0])
    return out


@pytest.mark.parametrize("codec", [VP8, OPUS, H264])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_push_batch_gives_what_push_gives(codec, seed: int) -> None:
    """The recorder feeds packets in batches through the inline fast path: whatever the
    stream, it must build exactly the frames ``push`` builds, one packet at a time."""
    arrivals = arrivals_with_trouble(Publisher(codec, first_seq=65500), random.Random(seed))
    one_by_one = assembler_for(Publisher(codec))
    expected_frames = [f for arrival, p in arrivals for f in one_by_one.push(p, arrival)]
    batched = assembler_for(Publisher(codec))
    rng = random.Random(seed)
    frames, pos = [], 0
    while pos < len(arrivals):
        size = rng.randint(1, 12)
        frames += batched.push_batch([(p, a) for a, p in arrivals[pos:pos + size]])
        pos += size
    assert len(expected_frames) >= 5  # (losses drop video frames until a keyframe)
    assert frames == expected_frames
    assert batched.needs_keyframe == one_by_one.needs_keyframe
