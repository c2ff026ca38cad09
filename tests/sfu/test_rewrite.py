"""StreamRewriter: one continuous outgoing stream per subscriber slot, whatever the source."""

from __future__ import annotations

from sfu.rewrite import Rewritten, StreamRewriter

TICKS = 3000  # one video frame at 90 kHz


def out(rewriter: StreamRewriter, source: str, seq: int, ts: int) -> tuple[int, int]:
    result = rewriter.rewrite(source, seq, ts)
    assert result is not None, f"packet {source}/{seq} was dropped"
    return result.sequence_number, result.timestamp


def test_first_packet_starts_at_the_initial_numbers() -> None:
    r = StreamRewriter(TICKS, initial_seq=1000, initial_ts=50_000)
    assert r.rewrite("alice", 7, 123_456) == Rewritten(1000, 50_000)
    assert r.source == "alice"


def test_packets_of_one_source_keep_their_spacing() -> None:
    r = StreamRewriter(TICKS, initial_seq=1000, initial_ts=50_000)
    out(r, "alice", 7, 123_456)
    assert out(r, "alice", 8, 123_456) == (1001, 50_000)  # same frame, same timestamp
    assert out(r, "alice", 9, 123_456 + TICKS) == (1002, 50_000 + TICKS)


def test_new_source_continues_after_last_seq_and_one_frame_after_last_ts() -> None:
    r = StreamRewriter(TICKS, initial_seq=1000, initial_ts=50_000)
    out(r, "alice", 7, 123_456)
    out(r, "alice", 8, 123_456 + TICKS)
    # Bob's numbers are unrelated to Alice's; the subscriber must not see a jump.
    assert out(r, "bob", 40_000, 9) == (1002, 50_000 + 2 * TICKS)
    assert out(r, "bob", 40_001, 9 + TICKS) == (1003, 50_000 + 3 * TICKS)
    assert r.source == "bob"


def test_switching_back_to_an_earlier_source_still_continues() -> None:
    r = StreamRewriter(TICKS, initial_seq=10, initial_ts=0)
    out(r, "alice", 500, 1_000_000)
    out(r, "bob", 20, 7)
    # Alice rejoins: her numbers jumped ahead meanwhile, the output does not.
    assert out(r, "alice", 900, 5_000_000) == (12, 2 * TICKS)


def test_outgoing_seq_and_ts_wrap_around() -> None:
    r = StreamRewriter(TICKS, initial_seq=65_534, initial_ts=2**32 - 1000)
    assert out(r, "alice", 10, 0) == (65_534, 2**32 - 1000)
    assert out(r, "alice", 11, TICKS) == (65_535, TICKS - 1000)
    assert out(r, "alice", 12, 2 * TICKS) == (0, 2 * TICKS - 1000)
    # A switch just after the wrap continues from the wrapped values.
    assert out(r, "bob", 30_000, 123) == (1, 3 * TICKS - 1000)


def test_source_seq_and_ts_wrap_around_within_one_source() -> None:
    r = StreamRewriter(960, initial_seq=100, initial_ts=0)
    assert out(r, "alice", 65_535, 2**32 - 500) == (100, 0)
    assert out(r, "alice", 0, 460) == (101, 960)
    assert out(r, "alice", 1, 1420) == (102, 1920)


def test_gaps_within_one_source_are_kept_so_the_subscriber_can_nack_them() -> None:
    r = StreamRewriter(TICKS, initial_seq=200, initial_ts=0)
    out(r, "alice", 50, 0)
    # 51..54 were lost on the way in: the output leaves the same hole.
    assert out(r, "alice", 55, 2 * TICKS) == (205, 2 * TICKS)


def test_original_seq_maps_outgoing_numbers_back_to_the_current_source() -> None:
    r = StreamRewriter(TICKS, initial_seq=200, initial_ts=0)
    out(r, "alice", 50, 0)
    out(r, "alice", 51, 0)
    seq, _ = out(r, "bob", 60_000, 0)
    out(r, "bob", 60_003, TICKS)  # 60_001 and 60_002 lost
    assert r.original_seq(seq) == 60_000
    # The subscriber NACKs the two outgoing numbers in the hole.
    assert [r.original_seq(s) for s in (seq + 1, seq + 2)] == [60_001, 60_002]


def test_original_seq_across_wrap_around() -> None:
    r = StreamRewriter(TICKS, initial_seq=65_535, initial_ts=0)
    out(r, "alice", 3, 0)
    assert out(r, "alice", 5, 0) == (1, 0)
    assert r.original_seq(0) == 4
    assert r.original_seq(65_535) == 3


def test_late_packet_from_before_the_switch_is_dropped() -> None:
    r = StreamRewriter(TICKS, initial_seq=1000, initial_ts=0)
    out(r, "alice", 10, 0)
    out(r, "bob", 500, 90_000)
    # Bob's 499 and 498 were sent before the slot switched to Bob: the subscriber has
    # already been given 1000 for Alice's packet, so these have no place in the stream.
    assert r.rewrite("bob", 499, 87_000) is None
    assert r.rewrite("bob", 498, 87_000) is None
    assert out(r, "bob", 501, 93_000) == (1002, 2 * TICKS)


def test_late_packet_after_the_switch_is_forwarded_with_its_original_spacing() -> None:
    r = StreamRewriter(TICKS, initial_seq=1000, initial_ts=0)
    out(r, "alice", 10, 0)
    first = out(r, "bob", 500, 90_000)
    assert first == (1001, TICKS)
    assert out(r, "bob", 502, 90_000 + 2 * TICKS) == (1003, 3 * TICKS)
    # 501 arrives late (reordered or retransmitted): it fills its own hole.
    assert out(r, "bob", 501, 90_000 + TICKS) == (1002, 2 * TICKS)
    # The late packet does not move the stream back: the next switch continues
    # after the newest packet sent, not after the late one.
    assert out(r, "carol", 7, 0) == (1004, 4 * TICKS)
