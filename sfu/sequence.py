"""RFC 3550 A.1's validation of one received stream's sequence numbers (no I/O).

A packet far ahead of the highest number seen, or far behind it, is taken at its word
only when the next packet follows it: then the publisher really restarted its
numbering. A lone packet that jumps is neither counted in the receive statistics nor
forwarded, so one packet cannot make receiver reports claim thousands of losses, and
a publisher that jumps on every packet is ignored rather than followed around.
"""

from __future__ import annotations

MAX_DROPOUT = 3000  # a gap up to this many numbers ahead is loss, not a restart
MAX_MISORDER = 100  # a packet fewer than this many numbers behind is reordering

VALID, RESTART, SUSPECT = 0, 1, 2


class SequenceCheck:
    """The highest sequence number of one SSRC and a jump awaiting confirmation."""

    __slots__ = ("max_seq", "_bad_seq", "suspects")

    def __init__(self, seq: int) -> None:
        self.max_seq = seq
        self._bad_seq: int | None = None
        self.suspects = 0  # packets dropped as unconfirmed jumps

    def update(self, seq: int) -> int:
        """VALID (count and forward), RESTART (a confirmed new numbering: start the
        statistics again from this packet) or SUSPECT (count nothing, drop it)."""
        delta = (seq - self.max_seq) & 0xFFFF
        if delta < MAX_DROPOUT:
            self.max_seq = seq
            return VALID
        if delta > 0x10000 - MAX_MISORDER:
            return VALID  # a duplicate or a reordered packet
        if seq == self._bad_seq:
            self.max_seq = seq
            self._bad_seq = None
            return RESTART
        self._bad_seq = (seq + 1) & 0xFFFF
        self.suspects += 1
        return SUSPECT
