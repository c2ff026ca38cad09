"""The queue on a subscriber's link, from the transport feedback its browser sends about
what the server sent it (encoded here by the server's own encoder, ``sfu.congestion``)."""

from __future__ import annotations

import struct

from sfu.congestion import ArrivalLog
from sfu.queueing import RING, QueueDelay, SendTimes, feedback_delays, parse_feedback


def feedback(arrivals: dict[int, int]) -> bytes:
    """A transport feedback packet reporting ``arrivals`` (sequence number -> us)."""
    log = ArrivalLog()
    for seq, at in arrivals.items():
        log.record(seq, at)
    packet = log.feedback(1, 2)
    assert packet is not None
    return packet


def test_a_feedback_reads_back_each_arrival_and_skips_the_lost() -> None:
    # Small and large deltas, a run of losses long enough for a run-length chunk, and the
    # sequence numbers wrapping.
    arrivals = {65530: 1_000_000, 65531: 1_000_250, 65533: 1_090_000, 2: 1_090_500,
                3: 1_000_000 + 64_000 * 10}
    got = parse_feedback(feedback(arrivals))
    assert [seq for seq, _ in got] == list(arrivals)
    arrived = [at for _, at in got]
    # times are to the 250 us tick, against a reference of whole 64 ms
    assert [b - a for a, b in zip(arrived, arrived[1:], strict=False)] == [
        b - a for a, b in zip(list(arrivals.values()), list(arrivals.values())[1:],
                              strict=False)]


def test_a_one_bit_status_vector_reads_as_browsers_send_it() -> None:
    # 14 packets from 10, received or not (1 0 1 1, then ten lost), one-byte deltas of
    # 1, 2 and 3 ticks after a reference of 2 x 64 ms.
    chunk = 0x8000 | (0b1011 << 10)
    packet = struct.pack("!BBHIIHHI", 0x80 | 15, 205, 6, 1, 2, 10, 14, (2 << 8) | 0)
    packet += struct.pack("!H", chunk) + bytes((1, 2, 3)) + bytes(3)
    assert parse_feedback(packet) == [(10, 128_250), (12, 128_750), (13, 129_500)]


def test_other_rtcp_and_truncated_feedback_read_as_nothing() -> None:
    packet = feedback({1: 1000, 2: 2000})
    assert parse_feedback(packet[:-4]) == []  # cut inside its status chunks
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 7)
    assert parse_feedback(receiver_report) == []


def test_a_feedback_claiming_more_statuses_than_are_kept_reads_as_nothing() -> None:
    """A hostile subscriber cannot make the server expand a few bytes into tens of
    thousands of statuses: a report longer than the send times kept is not read."""
    count = RING + 1  # every packet received, each a one-tick delta
    packet = struct.pack("!BBHIIHHI", 0x80 | 15, 205, 0, 1, 2, 10, count, 2 << 8)
    packet += struct.pack("!H", (1 << 13) | count) + bytes([1]) * count
    packet += bytes(-len(packet) % 4)
    assert parse_feedback(packet) == []


def test_delays_pair_each_arrival_with_its_send_time_in_a_compound_datagram() -> None:
    sent = SendTimes()
    seqs = [sent.stamp(5_000_000 + 10_000 * i) for i in range(3)]
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 7)
    datagram = receiver_report + feedback({seqs[0]: 100_000, seqs[2]: 121_000})
    assert feedback_delays(datagram, sent) == [100_000 - 5_000_000, 121_000 - 5_020_000]


def test_send_times_are_forgotten_after_the_ring() -> None:
    sent = SendTimes()
    first = sent.stamp(1)
    for i in range(5000):
        sent.stamp(2 + i)
    assert sent.sent_at(first) is None and sent.sent_at((first + 4999) & 0xFFFF) == 5000


def test_the_queue_is_the_delay_over_the_least_one_seen() -> None:
    queue = QueueDelay(window_s=30.0)
    assert queue.report([5_000, 5_400, 5_100], 0.0) == 0.0  # the empty link
    assert queue.report([5_300, 25_000], 0.1) == 0.3  # one late packet is no queue
    assert queue.report([85_000, 95_000], 0.2) == 80.0  # every packet 80 ms late
    assert queue.report([5_000], 0.3) == 0.0  # drained


def test_the_empty_link_is_the_least_delay_of_the_window() -> None:
    queue = QueueDelay(window_s=30.0)
    queue.report([1_000], 0.0)
    queue.report([3_000], 20.0)
    assert queue.report([4_000], 29.0) == 3.0
    assert queue.report([4_000], 31.0) == 1.0  # the 0.0 s floor left the window
