"""RFC 3550 A.1 sequence validation: lone jumps are dropped, confirmed ones restart."""

from __future__ import annotations

from sfu.sequence import MAX_DROPOUT, MAX_MISORDER, RESTART, SUSPECT, VALID, SequenceCheck


def test_gaps_below_the_dropout_and_reordering_are_valid() -> None:
    check = SequenceCheck(65_000)
    assert check.update(65_001) == VALID
    assert check.update((65_001 + MAX_DROPOUT - 1) & 0xFFFF) == VALID  # wraps: still loss
    top = check.max_seq
    assert check.update((top - MAX_MISORDER + 1) & 0xFFFF) == VALID  # late, kept
    assert check.max_seq == top  # a late packet does not move the highest number


def test_a_lone_jump_is_suspect_and_leaves_the_stream_alone() -> None:
    check = SequenceCheck(1_000)
    assert check.update(1_000 + MAX_DROPOUT) == SUSPECT
    assert check.update(1_000 - MAX_MISORDER - 1) == SUSPECT  # far behind
    assert check.update(1_001) == VALID
    assert (check.max_seq, check.suspects) == (1_001, 2)


def test_a_jump_followed_by_its_successor_is_a_restart() -> None:
    check = SequenceCheck(1_000)
    assert check.update(40_000) == SUSPECT
    assert check.update(40_001) == RESTART
    assert check.update(40_002) == VALID
    assert check.update(1_002) == SUSPECT  # the old numbering is now the jump


def test_jumping_on_every_packet_is_never_followed() -> None:
    check = SequenceCheck(0)
    verdicts = [check.update((k * 32_767) & 0xFFFF) for k in range(1, 301)]
    assert RESTART not in verdicts
    assert check.max_seq == 0
    # An even k lands k behind 0 (modulo 2**16): under 100 behind is reordering.
    assert verdicts.count(SUSPECT) == check.suspects == 251
