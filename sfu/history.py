"""Retransmission history: recent packets of one published track, by sequence number.

aiortc's sender keeps 128 packets, fewer than one keyframe at 640x480 (about 90) plus
the frames around it; a subscriber that lost part of a keyframe would then wait for a
new one. The ring here holds ``size`` packets (default 1024, about 8 s at 1 Mb/s).
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class PacketHistory(Generic[T]):
    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._seqs: list[int] = [-1] * size
        self._items: list[T | None] = [None] * size

    def put(self, seq: int, item: T) -> None:
        i = seq % self._size
        self._seqs[i] = seq
        self._items[i] = item

    def clear(self) -> None:
        """Let every packet go at once (the track is closed)."""
        self._seqs = [-1] * self._size
        self._items = [None] * self._size

    def get(self, seq: int) -> T | None:
        i = seq % self._size
        return self._items[i] if self._seqs[i] == seq else None
