"""Limits on one participant's media: loss tracking under sequence jumps, the NACK budget."""

from __future__ import annotations

import time

from aiortc.rtcrtpreceiver import NackGenerator

from sfu.limits import MissingPackets, RetransmitBudget


def test_a_small_gap_is_nacked_and_filled_by_the_retransmission() -> None:
    missing = MissingPackets()
    for seq in (100, 101, 102):
        assert not missing.add(seq)
    assert missing.add(106)
    assert missing.missing == {103, 104, 105}
    assert not missing.add(104)  # the retransmission (or a late packet)
    assert missing.missing == {103, 105}


def test_gaps_across_the_wrap_are_found() -> None:
    missing = MissingPackets()
    missing.add(65_534)
    assert missing.add(1)
    assert missing.missing == {65_535, 0}


def test_numbers_older_than_the_window_are_forgotten() -> None:
    missing = MissingPackets(window=128)
    missing.add(1000)
    missing.add(1002)  # 1001 missing
    for seq in range(1003, 1200):
        missing.add(seq)
    assert missing.missing == set()


def test_a_jump_beyond_the_window_restarts_tracking_without_a_nack() -> None:
    missing = MissingPackets(window=128)
    missing.add(10)
    missing.add(12)
    assert not missing.add(30_000)
    assert (missing.missing, missing.max_seq) == (set(), 30_000)
    assert missing.add(30_003)  # tracking goes on from the new numbering
    assert missing.missing == {30_001, 30_002}


def test_after_a_restart_a_lower_numbering_is_tracked_again() -> None:
    missing = MissingPackets()
    missing.add(50_000)
    missing.restart()
    missing.add(100)
    assert missing.add(103)  # not "late" behind 50,000: its losses are NACKed
    assert missing.missing == {101, 102}


def jumps(count: int) -> list[int]:
    """A hostile publisher: every packet half the sequence space after the last."""
    return [(i * 32_767) & 0xFFFF for i in range(count)]


def test_sequence_jumps_cost_constant_time() -> None:
    missing = MissingPackets()
    started = time.perf_counter()
    for seq in jumps(2000):
        missing.add(seq)
    elapsed = time.perf_counter() - started
    assert missing.missing == set()
    assert elapsed < 0.05, f"2000 jumping packets took {elapsed * 1000:.0f} ms"


def test_aiortcs_generator_spends_milliseconds_per_jump() -> None:
    """Why MissingPackets exists: the same packets through aiortc's NackGenerator."""

    class Seq:
        def __init__(self, seq: int) -> None:
            self.sequence_number = seq

    generator = NackGenerator()
    started = time.perf_counter()
    for seq in jumps(20):
        generator.add(Seq(seq))  # type: ignore[arg-type]
    assert time.perf_counter() - started > 0.02


def test_the_budget_allows_a_burst_then_the_rate() -> None:
    budget = RetransmitBudget(per_s=200, now=0.0)
    assert budget.take(150, now=0.0) == 150  # a lost keyframe, at once
    assert budget.take(150, now=0.0) == 50
    assert budget.take(150, now=0.1) == 20  # 200/s refills 20 in 0.1 s
    assert budget.take(1000, now=10.0) == 200  # never more than one second's worth
