"""Checkpoint content and what verifying the log against checkpoints decides (plain logic)."""

from __future__ import annotations

import hashlib

import pytest

from records.chain import GENESIS
from records.checkpoint import Checkpoint, Stored, due, following, judge, parse

T0 = 1_760_000_000.0


def h(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def chain(last: int) -> dict[int, str]:
    return {seq: h(seq) for seq in range(1, last + 1)}


def stored(cp: Checkpoint, *, sig: bool = True, token: str = "") -> Stored:
    return Stored(cp.data(), cp.hash(), sig, token, "2026-12-03T10:00:00+00:00")


def series(*seqs: int) -> list[Checkpoint]:
    made: list[Checkpoint] = []
    for i, seq in enumerate(seqs):
        made.append(following(made[-1] if made else None, head=(seq, h(seq)),
                              seals={f"v{i}": h(100 + i)}, now=T0 + i, key_id="k"))
    return made


def test_a_checkpoint_is_canonical_json_and_reads_back() -> None:
    cp = series(3)[0]
    assert cp.data() == (b'{"at":1760000000.0,"audit":{"hash":"' + h(3).encode()
                         + b'","seq":3},"key_id":"k","n":1,"prev":"' + GENESIS.encode()
                         + b'","seals":{"v0":"' + h(100).encode() + b'"},"v":1}')
    assert cp.hash() == hashlib.sha256(cp.data()).hexdigest()
    assert parse(cp.data()) == cp
    with pytest.raises(ValueError, match="canonical"):
        parse(cp.data().replace(b",", b", ", 1))  # same content, other bytes
    with pytest.raises(ValueError):
        parse(b'{"n": 1}')


def test_checkpoints_chain_to_each_other() -> None:
    first, second = series(3, 5)
    assert (first.n, first.prev) == (1, GENESIS)
    assert (second.n, second.prev) == (2, first.hash())


@pytest.mark.parametrize(("previous_seq", "head", "seals", "ended", "now", "expected"), [
    (None, 0, 0, None, T0, False),  # empty log, nothing to anchor
    (None, 4, 0, None, T0, True),  # the first entries
    (4, 4, 0, T0 + 9, T0 + 9999, False),  # nothing new since the last checkpoint
    (4, 6, 0, None, T0 + 100, False),  # new entries, interval not over
    (4, 6, 0, None, T0 + 3600, True),  # interval over
    (4, 6, 0, T0 + 50, T0 + 60, True),  # a visit ended since
    (4, 6, 0, T0 - 50, T0 + 60, False),  # the visit ended before the checkpoint
    (4, 4, 1, None, T0 + 1, True),  # a seal waits
])
def test_when_a_checkpoint_is_due(previous_seq: int | None, head: int, seals: int,
                                  ended: float | None, now: float, expected: bool) -> None:
    previous = series(previous_seq)[0] if previous_seq is not None else None
    assert due(previous, head_seq=head, pending_seals=seals, last_visit_end=ended, now=now,
               interval_s=3600) is expected


def test_an_untouched_log_verifies_and_says_how_far_it_is_anchored() -> None:
    verdict = judge([stored(cp) for cp in series(3, 7)], chain(9), 9)
    assert verdict.ok and verdict.problems == ()
    assert (verdict.anchored_seq, verdict.checkpoints) == (7, 2)


def test_a_rewritten_entry_under_a_checkpoint_is_caught() -> None:
    rewritten = chain(9) | {7: h(700)}  # entry 7 and everything after rewritten
    verdict = judge([stored(cp) for cp in series(3, 7)], rewritten, 9)
    assert not verdict.ok
    assert verdict.problems == (
        "Entry 7 differs from the one checkpoint 2 time-stamped at 2026-12-03T10:00:00+00:00:"
        " the log was rewritten after it was anchored.",)


def test_entries_removed_below_a_checkpoint_are_caught() -> None:
    verdict = judge([stored(cp) for cp in series(3, 7)], chain(5), 5)
    assert not verdict.ok
    assert "covers entry 7, but the log ends at entry 5" in verdict.problems[0]


def test_rewriting_after_the_last_checkpoint_is_not_anchored_yet() -> None:
    verdict = judge([stored(cp) for cp in series(3, 7)], chain(9) | {9: h(900)}, 9)
    assert verdict.ok and verdict.anchored_seq == 7


def test_bad_tokens_signatures_and_missing_checkpoints_are_named() -> None:
    first, second, third = series(3, 5, 7)
    verdict = judge([stored(first, token="Mismatch between messages"),
                     stored(third, sig=False)], chain(9), 9)
    assert verdict.problems == (
        "Checkpoint 1: its time-stamp token does not verify (Mismatch between messages).",
        "Checkpoint 3 does not follow checkpoint 1: checkpoints were removed or reordered.",
        "Checkpoint 3 is not signed by the recording key.",
    )
    edited = Stored(second.data(), h(1), True, "", "t")
    assert judge([stored(first), edited], chain(9), 9).problems == (
        "Checkpoint 2 does not match its stored hash.",)
