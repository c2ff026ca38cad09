"""Limits on what one participant's RTP and RTCP can make a worker do (no I/O, clock passed in).

A worker's single event loop runs every visit's media: a publisher or subscriber whose
packets make the server loop, learn or send without bound stalls every visit on it.
``MediaLimits`` holds the configured bounds; ``MissingPackets`` finds a publisher's
lost packets in constant time per packet whatever its sequence numbers do;
``RetransmitBudget`` bounds how many packets a subscriber's NACKs can have resent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaLimits:
    max_ssrcs: int = 8  # SSRCs learnt per peer connection (audio, video, RTX: 3 used)
    nack_max_seqs: int = 64  # sequence numbers of one subscriber NACK acted on
    rtx_packets_per_s: int = 200  # retransmissions per subscriber connection per second
    remb_floor_bps: int = 150_000  # a subscriber REMB under this is counted as remb_floor


DEFAULT_LIMITS = MediaLimits()


class MissingPackets:
    """The sequence numbers missing from one published stream, to NACK the publisher.

    aiortc's ``NackGenerator`` adds every skipped number one by one (32,767 for a jump of
    half the sequence space) and then scans them all: about 9 ms of the event loop per
    packet. Here a jump larger than ``window`` is a restart of the numbering: the loss
    tracking starts again from that packet and nothing is NACKed. Smaller gaps are
    tracked as before, and only the last ``window`` numbers are kept.
    """

    def __init__(self, window: int = 128) -> None:
        self.window = window
        self.max_seq: int | None = None
        self.missing: set[int] = set()

    def restart(self) -> None:
        """The publisher restarted its numbering: track losses from its next packet."""
        self.max_seq = None
        self.missing.clear()

    def add(self, seq: int) -> bool:
        """One received packet; True if it revealed missing packets (NACK them)."""
        max_seq = self.max_seq
        if max_seq is None:
            self.max_seq = seq
            return False
        ahead = (seq - max_seq) & 0xFFFF
        if ahead == 0 or ahead >= 0x8000:  # a duplicate, or late: fills a gap
            self.missing.discard(seq)
            return False
        self.max_seq = seq
        if ahead > self.window:
            self.missing.clear()
            return False
        missing = self.missing
        if missing:  # forget what fell out of the window
            oldest = (seq - self.window) & 0xFFFF
            self.missing = {s for s in missing if (s - oldest) & 0xFFFF < 0x8000}
        if ahead == 1:
            return False
        self.missing.update((max_seq + i) & 0xFFFF for i in range(1, ahead))
        return True


class RetransmitBudget:
    """A token bucket: packets per second one subscriber's NACKs can have resent.

    Holds at most one second's worth, so a subscriber that lost a keyframe gets it back
    at once while a NACK storm is answered at the configured rate and no faster.
    """

    def __init__(self, per_s: int, now: float) -> None:
        self._rate = float(per_s)
        self._tokens = float(per_s)
        self._at = now

    def take(self, wanted: int, now: float) -> int:
        """How many of ``wanted`` retransmissions may go now (they are spent)."""
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted
