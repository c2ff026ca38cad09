"""How long a subscriber's link queues what the server sends it (no I/O, times passed in).

A thin link shows first as a growing queue, long before it drops anything: a home
router holds about 200 ms, and a browser's audio jitter buffer conceals what comes later
than it expects. The server numbers every packet it sends on a connection (the
transport-wide sequence number, ``sfu.extensions``) and keeps when it sent each; the
browser reports when each arrived (RTCP transport feedback, every 50-100 ms). A packet's
arrival minus its send time is the path's delay plus an unknown clock offset; the least
of these over the last half minute is the empty link, and what a report's packets took
beyond it is the queue. The least of one report's packets counts, so a single late packet
(a burst, a busy receiver) is no queue.
"""

from __future__ import annotations

import struct
from array import array
from collections import deque

from sfu.congestion import REFERENCE_US, RTPFB, TICK_US, TRANSPORT_CC_FMT

RING = 4096  # send times kept (a report covers the last few hundred packets at most)
FEEDBACK_HEAD = struct.Struct("!HHI")  # base sequence, status count, reference + count


class SendTimes:
    """The transport-wide sequence numbers of one connection and when each was sent."""

    def __init__(self) -> None:
        self._next = 0
        self._times = array("q", bytes(8 * RING))
        self._seqs = array("l", [-1]) * RING

    def stamp(self, now_us: int) -> int:
        """The next sequence number, sent now."""
        seq = self._next
        self._next = (seq + 1) & 0xFFFF
        self._times[seq % RING] = now_us
        self._seqs[seq % RING] = seq
        return seq

    def sent_at(self, seq: int) -> int | None:
        """When ``seq`` was sent (None when no longer kept)."""
        return self._times[seq % RING] if self._seqs[seq % RING] == seq else None


def parse_feedback(packet: bytes) -> list[tuple[int, int]]:
    """(sequence number, arrival in us on the receiver's clock) of each packet one RTCP
    transport feedback packet reports received; [] for anything else or a truncated one."""
    if (len(packet) < 20 or packet[1] != RTPFB or packet[0] & 0x1F != TRANSPORT_CC_FMT):
        return []
    base, count, reference = FEEDBACK_HEAD.unpack_from(packet, 12)
    if count > RING:  # more than a connection's kept send times: nothing to pair, and a
        return []     # few bytes of run-length chunks would expand to 65,535 statuses
    pos, symbols = 20, []
    while len(symbols) < count:
        if pos + 2 > len(packet):
            return []
        chunk = int.from_bytes(packet[pos:pos + 2], "big")
        pos += 2
        if not chunk & 0x8000:  # run length: one symbol repeated
            symbols += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif not chunk & 0x4000:  # one-bit status vector: received or not
            symbols += [(chunk >> (13 - i)) & 1 for i in range(14)]
        else:  # two-bit status vector
            symbols += [(chunk >> (12 - 2 * i)) & 3 for i in range(7)]
    arrival = (reference >> 8) * REFERENCE_US
    out = []
    for i, symbol in enumerate(symbols[:count]):
        if symbol == 0:
            continue
        size = 1 if symbol == 1 else 2
        if pos + size > len(packet):
            return []
        delta = int.from_bytes(packet[pos:pos + size], "big", signed=size == 2)
        pos += size
        arrival += delta * TICK_US
        out.append(((base + i) & 0xFFFF, arrival))
    return out


def feedback_delays(datagram: bytes, sent: SendTimes) -> list[int]:
    """Arrival minus send time (us) of each packet the transport feedback in one
    compound RTCP datagram reports received (its other packets are skipped)."""
    delays = []
    pos = 0
    while pos + 4 <= len(datagram):
        end = pos + 4 * (int.from_bytes(datagram[pos + 2:pos + 4], "big") + 1)
        for seq, arrival in parse_feedback(datagram[pos:end]):
            at = sent.sent_at(seq)
            if at is not None:
                delays.append(arrival - at)
        pos = end
    return delays


class QueueDelay:
    """The queue on a subscriber's link, from its transport feedback."""

    def __init__(self, window_s: float = 30.0) -> None:
        self._window_s = window_s
        self._floor: deque[tuple[float, int]] = deque()  # (when, least delay), rising
        self.queue_ms = 0.0

    def report(self, delays_us: list[int], now: float) -> float:
        """One report's packets, each as arrival minus send time (us); returns the queue
        in milliseconds that every one of them met."""
        if not delays_us:
            return self.queue_ms
        least = min(delays_us)
        floor = self._floor
        while floor and floor[-1][1] >= least:
            floor.pop()
        floor.append((now, least))
        while now - floor[0][0] > self._window_s:
            floor.popleft()
        self.queue_ms = (least - floor[0][1]) / 1000
        return self.queue_ms
