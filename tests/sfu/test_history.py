"""PacketHistory: the retransmission ring of one published track."""

from __future__ import annotations

import sys

from sfu.history import PacketHistory

KEYFRAME_PACKETS = 90  # a 640x480 keyframe


def fill(history: PacketHistory[str], first: int, count: int) -> list[int]:
    seqs = [(first + i) % 65_536 for i in range(count)]
    for seq in seqs:
        history.put(seq, f"packet-{seq}")
    return seqs


def test_keyframe_and_following_frames_are_all_retrievable_with_the_default_size() -> None:
    history: PacketHistory[str] = PacketHistory()
    keyframe = fill(history, 3000, KEYFRAME_PACKETS)
    # About 2 s of delta frames after it (30 fps, 10 packets each).
    later = fill(history, 3000 + KEYFRAME_PACKETS, 600)
    assert [history.get(s) for s in keyframe + later] == [f"packet-{s}" for s in keyframe + later]


def test_a_ring_as_small_as_aiortcs_loses_the_keyframe() -> None:
    history: PacketHistory[str] = PacketHistory(128)
    keyframe = fill(history, 3000, KEYFRAME_PACKETS)
    fill(history, 3000 + KEYFRAME_PACKETS, 60)
    assert history.get(keyframe[0]) is None
    assert history.get(keyframe[-1]) == f"packet-{keyframe[-1]}"


def test_an_entry_is_overwritten_by_the_packet_size_slots_later() -> None:
    history: PacketHistory[str] = PacketHistory(8)
    history.put(3, "old")
    history.put(11, "new")
    assert history.get(3) is None
    assert history.get(11) == "new"


def test_asking_for_a_seq_other_than_the_one_in_its_slot_returns_none() -> None:
    history: PacketHistory[str] = PacketHistory(8)
    history.put(11, "eleven")
    assert history.get(19) is None  # same slot, newer seq never stored
    assert history.get(12) is None  # empty slot
    assert history.get(11) == "eleven"


def test_seq_wrap_around_keeps_both_sides_of_the_wrap() -> None:
    history: PacketHistory[str] = PacketHistory()
    seqs = fill(history, 65_530, 12)
    assert seqs[:6] == [65_530, 65_531, 65_532, 65_533, 65_534, 65_535]
    assert seqs[6:] == [0, 1, 2, 3, 4, 5]
    assert all(history.get(s) == f"packet-{s}" for s in seqs)


def test_after_wrap_around_the_packet_1024_older_is_gone() -> None:
    history: PacketHistory[str] = PacketHistory()
    fill(history, 64_000, 1536 + 1)  # 64000 .. 65535, then 0
    assert history.get(0) == "packet-0"
    assert history.get(65_536 - 1024) is None  # shared slot 0 with seq 0
    assert history.get(65_536 - 1023) == f"packet-{65_536 - 1023}"


def test_clear_lets_every_packet_go() -> None:
    history: PacketHistory[bytes] = PacketHistory(64)
    payload = bytes(1200)
    for seq in range(64):
        history.put(seq, payload)
    before = sys.getrefcount(payload)
    history.clear()
    assert all(history.get(seq) is None for seq in range(64))
    assert sys.getrefcount(payload) == before - 64  # freed now, not at a collection
